using System.Runtime.CompilerServices;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// An x87 double extended-precision value (Intel SDM Vol. 1, 4.2.2 and table 4-3): a 64-bit significand with an
/// explicit integer bit J (bit 63), a 15-bit exponent biased by 16383 and a sign. The encoding is kept bit for bit,
/// including the forms the 387 and later reject as operands (unnormals, pseudo-NaNs, pseudo-infinities).
/// </summary>
public readonly record struct Float80(ulong Significand, ushort SignExponent)
{
    public const int Bias = 16383;
    public const ushort MaxExponent = 0x7FFF;
    public const ulong IntegerBit = 1UL << 63;
    public const ulong QuietBit = 1UL << 62;

    public static readonly Float80 Zero = new(0, 0);
    public static readonly Float80 NegativeZero = new(0, 0x8000);
    public static readonly Float80 One = new(IntegerBit, Bias);
    public static readonly Float80 PositiveInfinity = new(IntegerBit, MaxExponent);
    public static readonly Float80 NegativeInfinity = new(IntegerBit, 0xFFFF);
    /// <summary>The "real indefinite" QNaN the x87 returns for a masked invalid operation (SDM Vol. 1, 4.8.3.7).</summary>
    public static readonly Float80 Indefinite = new(0xC000_0000_0000_0000, 0xFFFF);

    public bool Sign => (SignExponent & 0x8000) != 0;
    public int BiasedExponent => SignExponent & MaxExponent;

    public bool IsZero => BiasedExponent == 0 && Significand == 0;
    /// <summary>Exponent 0 and a non-zero significand: a denormal or a pseudo-denormal (J = 1).</summary>
    public bool IsDenormal => BiasedExponent == 0 && Significand != 0;
    public bool IsInfinity => BiasedExponent == MaxExponent && Significand == IntegerBit;
    public bool IsNaN => BiasedExponent == MaxExponent && (Significand & IntegerBit) != 0 && (Significand << 1) != 0;
    public bool IsSignalingNaN => IsNaN && (Significand & QuietBit) == 0;
    /// <summary>Unnormal, pseudo-NaN or pseudo-infinity: an invalid operand on the 387 and later (SDM Vol. 1, 8.2.2).</summary>
    public bool IsUnsupported => BiasedExponent != 0 && (Significand & IntegerBit) == 0;
    public bool IsFiniteNonZero => BiasedExponent != MaxExponent && !IsZero && !IsUnsupported;

    public Float80 Negate() => new(Significand, (ushort)(SignExponent ^ 0x8000));
    public Float80 Abs() => new(Significand, (ushort)(SignExponent & 0x7FFF));
    public Float80 WithSign(bool negative) => new(Significand, (ushort)((SignExponent & 0x7FFF) | (negative ? 0x8000 : 0)));
    public Float80 Quieted() => new(Significand | QuietBit, SignExponent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float80 Make(bool sign, int biasedExponent, ulong significand) =>
        new(significand, (ushort)((sign ? 0x8000 : 0) | (biasedExponent & MaxExponent)));

    public override string ToString() => $"{SignExponent:x4}:{Significand:x16}";
}

/// <summary>The six x87 exception flags as they sit in the status word and, as masks, in the control word (SDM Vol. 1, 8.1.3).</summary>
[Flags]
public enum FpuExceptions : ushort
{
    None = 0,
    Invalid = 1,
    Denormal = 2,
    ZeroDivide = 4,
    Overflow = 8,
    Underflow = 16,
    Precision = 32,
    All = 0x3F,
}

/// <summary>The rounding-control field (FCW.RC, SDM Vol. 1, 4.8.4).</summary>
public enum FpuRounding
{
    Nearest = 0,
    Down = 1,
    Up = 2,
    TowardZero = 3,
}
