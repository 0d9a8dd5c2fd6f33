using System.Numerics;
using System.Runtime.CompilerServices;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The environment and the sticky outcome of soft-float operations: rounding control, precision control, the
/// exception masks of the control word, and the flags and C1 ("rounded up") an operation produced.
/// </summary>
public struct FpuEnvironment
{
    public FpuRounding Rounding;
    /// <summary>Significand bits of a result rounded for a register: 24, 53 or 64 (FCW.PC, SDM Vol. 1, 8.1.5.2).</summary>
    public int Precision;
    /// <summary>The masked exceptions (FCW bits 5:0): an unmasked overflow or underflow of a register result is biased.</summary>
    public FpuExceptions Masks;
    public FpuExceptions Flags;
    /// <summary>The last rounding increased the magnitude (reported in C1).</summary>
    public bool RoundedUp;
    /// <summary>
    /// A single- or double-precision source operand was a denormal. Its DE is raised by the operation that uses it, and
    /// only when no NaN operand takes precedence (SDM Vol. 1, 4.9.2), since the widened value is no longer denormal.
    /// </summary>
    public bool SourceDenormal;

    public FpuEnvironment(FpuRounding rounding, int precision = 64, FpuExceptions masks = FpuExceptions.All)
    {
        Rounding = rounding;
        Precision = precision;
        Masks = masks;
    }

    /// <summary>From a control word: RC in bits 11:10, PC in bits 9:8 (00 = 24 bits, 10 = 53, 11 = 64; 01 reserved, taken as 64).</summary>
    public static FpuEnvironment FromControlWord(ushort fcw) => new(
        (FpuRounding)((fcw >> 10) & 3),
        ((fcw >> 8) & 3) switch { 0 => 24, 2 => 53, _ => 64 },
        (FpuExceptions)(fcw & 0x3F));

    public readonly bool Unmasked(FpuExceptions e) => (Masks & e) == 0;
}

/// <summary>
/// A software implementation of x87 double extended-precision arithmetic (Intel SDM Vol. 1, chapter 4 and 8): every
/// result is computed exactly in integers and then rounded once, in all four rounding modes, to 24, 53 or 64
/// significand bits, with denormals, infinities, NaNs and the six exception flags. No host floating point takes part
/// in an exact result. Written for this project from the SDM's definitions.
/// </summary>
public static partial class SoftFloat
{
    /// <summary>Exponent range of a format: the smallest normal and the largest finite unbiased exponent.</summary>
    internal readonly record struct Format(int Precision, int MinExponent, int MaxExponent, int Bias);

    internal static readonly Format Extended = new(64, -16382, 16383, 16383);
    internal static readonly Format Double = new(53, -1022, 1023, 1023);
    internal static readonly Format Single = new(24, -126, 127, 127);

    /// <summary>The bias the x87 applies to a register result whose overflow or underflow exception is unmasked (SDM Vol. 1, 4.9.1.4-5).</summary>
    private const int UnmaskedBias = 24576;

    /// <summary>A rounded value: sign, unbiased exponent and <c>Precision</c> significand bits (J at the top when normal).</summary>
    internal readonly record struct Rounded(bool Sign, int Exponent, ulong Significand, bool Normal, bool Infinite);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static UInt128 ShiftRightJam(UInt128 v, int n)
    {
        if (n <= 0) return v;
        if (n >= 128) return v != 0 ? UInt128.One : UInt128.Zero;
        UInt128 lost = v << (128 - n);
        return (v >> n) | (lost != 0 ? UInt128.One : UInt128.Zero);
    }

    private static int LeadingZeros(UInt128 v)
    {
        ulong hi = (ulong)(v >> 64);
        return hi != 0 ? BitOperations.LeadingZeroCount(hi) : 64 + BitOperations.LeadingZeroCount((ulong)v);
    }

    /// <summary>The IEEE rounding decision for the bits below the kept ones.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool RoundUp(FpuRounding rc, bool sign, bool keepOdd, bool aboveHalf, bool exactlyHalf, bool inexact) => rc switch
    {
        FpuRounding.Nearest => aboveHalf || (exactlyHalf && keepOdd),
        FpuRounding.Down => sign && inexact,
        FpuRounding.Up => !sign && inexact,
        _ => false,
    };

    /// <summary>
    /// Rounds sign × <paramref name="sig"/> × 2^(<paramref name="exp"/> − 127) (any non-zero <paramref name="sig"/>) to
    /// <paramref name="precision"/> bits in <paramref name="format"/>'s exponent range, setting PE, UE, OE and C1.
    /// Tininess is detected after rounding, as x86 does. With <paramref name="biasUnmasked"/> (a register
    /// destination), an unmasked overflow or underflow delivers the result with its exponent biased by ∓24576.
    /// </summary>
    internal static Rounded Round(ref FpuEnvironment env, bool sign, int exp, UInt128 sig, int precision, Format format, bool biasUnmasked)
    {
        env.RoundedUp = false;
        if (sig == 0) return new Rounded(sign, 0, 0, false, false);
        int lz = LeadingZeros(sig);
        sig <<= lz;
        exp -= lz;
        int drop = 128 - precision;
        bool tiny = false;
        bool denormalize = false;
        if (exp < format.MinExponent)
        {
            // Tiny after rounding: the value rounded with an unbounded exponent is still below the smallest normal.
            tiny = exp < format.MinExponent - 1 || !CarriesOut(env.Rounding, sign, sig, drop);
            if (tiny && biasUnmasked && env.Unmasked(FpuExceptions.Underflow))
            {
                exp += UnmaskedBias;
                env.Flags |= FpuExceptions.Underflow;
                tiny = false;
            }
            else
            {
                sig = ShiftRightJam(sig, format.MinExponent - exp);
                exp = format.MinExponent;
                denormalize = true;
            }
        }

        UInt128 keep = sig >> drop;
        UInt128 rem = sig & ((UInt128.One << drop) - 1);
        UInt128 half = UInt128.One << (drop - 1);
        bool inexact = rem != 0;
        bool up = RoundUp(env.Rounding, sign, ((ulong)keep & 1) != 0, rem > half, rem == half, inexact);
        if (up)
        {
            keep++;
            if (keep >> precision != 0)
            {
                keep >>= 1;
                exp++;
            }
        }

        if (inexact)
        {
            env.Flags |= FpuExceptions.Precision;
            env.RoundedUp = up;
        }
        if (tiny && (inexact || env.Unmasked(FpuExceptions.Underflow)))
        {
            env.Flags |= FpuExceptions.Underflow;
        }

        bool normal = !denormalize || (keep >> (precision - 1)) != 0;
        if (exp > format.MaxExponent)
        {
            env.Flags |= FpuExceptions.Overflow;
            if (biasUnmasked && env.Unmasked(FpuExceptions.Overflow))
            {
                return new Rounded(sign, exp - UnmaskedBias, (ulong)keep, true, false);
            }
            env.Flags |= FpuExceptions.Precision;
            bool toInfinity = env.Rounding switch
            {
                FpuRounding.Nearest => true,
                FpuRounding.Up => !sign,
                FpuRounding.Down => sign,
                _ => false,
            };
            env.RoundedUp = toInfinity;
            return toInfinity
                ? new Rounded(sign, format.MaxExponent + 1, 0, true, true)
                : new Rounded(sign, format.MaxExponent, precision == 64 ? ulong.MaxValue : (1UL << precision) - 1, true, false);
        }
        return new Rounded(sign, exp, (ulong)keep, normal, false);
    }

    /// <summary>Whether rounding <paramref name="sig"/> (bit 127 set) at <paramref name="drop"/> bits carries into a new top bit.</summary>
    private static bool CarriesOut(FpuRounding rc, bool sign, UInt128 sig, int drop)
    {
        UInt128 keep = sig >> drop;
        int precision = 128 - drop;
        UInt128 allOnes = (UInt128.One << precision) - 1;
        if (keep != allOnes) return false;
        UInt128 rem = sig & ((UInt128.One << drop) - 1);
        UInt128 half = UInt128.One << (drop - 1);
        return RoundUp(rc, sign, true, rem > half, rem == half, rem != 0);
    }

    /// <summary>Rounds and packs a register result at the environment's precision (PC) in the extended exponent range.</summary>
    internal static Float80 RoundToExtended(ref FpuEnvironment env, bool sign, int exp, UInt128 sig, int precision) =>
        PackExtended(Round(ref env, sign, exp, sig, precision, Extended, biasUnmasked: true), precision);

    private static Float80 PackExtended(Rounded r, int precision)
    {
        if (r.Infinite) return r.Sign ? Float80.NegativeInfinity : Float80.PositiveInfinity;
        ulong mant = precision == 64 ? r.Significand : r.Significand << (64 - precision);
        if (mant == 0) return r.Sign ? Float80.NegativeZero : Float80.Zero;
        int biased = r.Normal ? r.Exponent + Float80.Bias : 0;
        return Float80.Make(r.Sign, biased, mant);
    }

    /// <summary>
    /// Splits a finite non-zero value into sign, unbiased exponent and a normalised significand (J set):
    /// value = sig × 2^(exp − 63). Denormals and pseudo-denormals are normalised into the wider exponent range.
    /// </summary>
    internal static void Unpack(Float80 a, out bool sign, out int exp, out ulong sig)
    {
        sign = a.Sign;
        sig = a.Significand;
        int e = a.BiasedExponent;
        if (e == 0)
        {
            exp = 1 - Float80.Bias;
            int lz = BitOperations.LeadingZeroCount(sig);
            sig <<= lz;
            exp -= lz;
        }
        else
        {
            exp = e - Float80.Bias;
        }
    }
}
