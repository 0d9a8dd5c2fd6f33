namespace HybridVmm.Hardware.Cpu;

public static partial class SoftFloat
{
    /// <summary>An integer, exactly (every 64-bit integer fits the 64-bit significand).</summary>
    public static Float80 FromInteger(long v) =>
        v < 0 ? FromMagnitude(true, (ulong)(-(v + 1)) + 1) : FromMagnitude(false, (ulong)v);

    /// <summary>A single-precision value, exactly; a denormal is noted in <see cref="FpuEnvironment.SourceDenormal"/>, an SNaN stays an SNaN.</summary>
    public static Float80 FromSingle(ref FpuEnvironment env, uint bits) => FromBinary(ref env, bits, Single, 23);

    /// <summary>A double-precision value, exactly (FLD m64fp).</summary>
    public static Float80 FromDouble(ref FpuEnvironment env, ulong bits) => FromBinary(ref env, bits, Double, 52);

    private static Float80 FromBinary(ref FpuEnvironment env, ulong bits, Format f, int fractionBits)
    {
        int expBits = (f == Single ? 32 : 64) - 1 - fractionBits;
        bool sign = (bits >> (fractionBits + expBits)) != 0;
        int e = (int)((bits >> fractionBits) & ((1UL << expBits) - 1));
        ulong frac = bits & ((1UL << fractionBits) - 1);
        int maxE = (1 << expBits) - 1;
        if (e == maxE)
        {
            if (frac == 0) return InfinityOf(sign);
            // An SNaN stays signalling: the operation that uses it raises IE and quiets it (an SNaN beside a QNaN
            // yields the QNaN, so it must still be recognisable), FLD quiets it on loading.
            return Float80.Make(sign, Float80.MaxExponent, Float80.IntegerBit | (frac << (63 - fractionBits)));
        }
        if (e == 0)
        {
            if (frac == 0) return ZeroOf(sign);
            env.SourceDenormal = true;
            int lz = System.Numerics.BitOperations.LeadingZeroCount(frac);
            // value = frac × 2^(1 − bias − fractionBits)
            int exp = 1 - f.Bias - fractionBits + (63 - lz);
            return Float80.Make(sign, exp + Float80.Bias, frac << lz);
        }
        return Float80.Make(sign, e - f.Bias + Float80.Bias, Float80.IntegerBit | (frac << (63 - fractionBits)));
    }

    /// <summary>FST m32fp: rounded by RC to single precision, with its exponent range (SDM Vol. 2A, FST).</summary>
    public static uint ToSingle(ref FpuEnvironment env, Float80 a) => (uint)ToBinary(ref env, a, Single, 23);

    /// <summary>FST m64fp.</summary>
    public static ulong ToDouble(ref FpuEnvironment env, Float80 a) => ToBinary(ref env, a, Double, 52);

    private static ulong ToBinary(ref FpuEnvironment env, Float80 a, Format f, int fractionBits)
    {
        env.RoundedUp = false;
        int expBits = (f == Single ? 32 : 64) - 1 - fractionBits;
        ulong signBit = a.Sign ? 1UL << (fractionBits + expBits) : 0;
        ulong expMax = ((1UL << expBits) - 1) << fractionBits;
        if (a.IsUnsupported)
        {
            env.Flags |= FpuExceptions.Invalid;
            return signBit | expMax | (1UL << (fractionBits - 1)) | (1UL << (fractionBits + expBits)); // the indefinite
        }
        if (a.IsNaN)
        {
            if (a.IsSignalingNaN) env.Flags |= FpuExceptions.Invalid;
            return signBit | expMax | ((a.Significand | Float80.QuietBit) & ~Float80.IntegerBit) >> (63 - fractionBits);
        }
        if (a.IsInfinity) return signBit | expMax;
        if (a.IsZero) return signBit;
        Unpack(a, out bool s, out int e, out ulong m);
        Rounded r = Round(ref env, s, e, (UInt128)m << 64, f.Precision, f, biasUnmasked: false);
        if (r.Infinite) return signBit | expMax;
        ulong frac = r.Significand & ((1UL << fractionBits) - 1);
        ulong biased = r.Normal ? (ulong)(r.Exponent + f.Bias) : 0;
        return signBit | (biased << fractionBits) | frac;
    }

    /// <summary>
    /// FIST/FISTP: rounded by RC to a signed integer of <paramref name="bits"/> bits. NaN, infinity and out-of-range
    /// values are invalid (IE) and give the integer indefinite (the most negative value).
    /// </summary>
    public static long ToInteger(ref FpuEnvironment env, Float80 a, int bits)
    {
        env.RoundedUp = false;
        long indefinite = bits == 64 ? long.MinValue : -(1L << (bits - 1));
        if (a.IsNaN || a.IsInfinity || a.IsUnsupported)
        {
            env.Flags |= FpuExceptions.Invalid;
            return indefinite;
        }
        if (!ToIntegerMagnitude(a, env.Rounding, out ulong m, out bool inexact, out bool up))
        {
            env.Flags |= FpuExceptions.Invalid;
            return indefinite;
        }
        ulong limit = a.Sign ? 1UL << (bits - 1) : (1UL << (bits - 1)) - 1;
        if (m > limit)
        {
            env.Flags |= FpuExceptions.Invalid;
            return indefinite;
        }
        if (inexact)
        {
            env.Flags |= FpuExceptions.Precision;
            env.RoundedUp = up;
        }
        return a.Sign ? (long)(0 - m) : (long)m;
    }

    /// <summary>
    /// The x87 constants (SDM Vol. 1, 8.3.8): the FPU holds them with more bits than the 64 it loads and rounds them
    /// by RC, without PE. Each is its round-to-nearest significand plus whether the exact value lies above it.
    /// </summary>
    public static Float80 Constant(FpuConstant c, FpuRounding rc)
    {
        // (exponent, nearest significand, nearest rounded up?)
        (int exp, ulong sig, bool nearestWasUp) = c switch
        {
            FpuConstant.Pi => (0x4000, 0xC90FDAA22168C235UL, true),
            FpuConstant.Log2E => (0x3FFF, 0xB8AA3B295C17F0BCUL, true),
            FpuConstant.Log2Ten => (0x4000, 0xD49A784BCD1B8AFEUL, false),
            FpuConstant.Log10Two => (0x3FFD, 0x9A209A84FBCFF799UL, true),
            FpuConstant.Ln2 => (0x3FFE, 0xB17217F7D1CF79ACUL, true),
            FpuConstant.One => (0x3FFF, Float80.IntegerBit, false),
            _ => (0, 0UL, false),
        };
        if (sig == 0) return Float80.Zero;
        if (c == FpuConstant.One) return Float80.One;
        // Down and toward zero take the value below the exact one, up the value above (all constants are positive).
        if (rc is FpuRounding.Down or FpuRounding.TowardZero && nearestWasUp) sig--;
        if (rc == FpuRounding.Up && !nearestWasUp) sig++;
        return Float80.Make(false, exp, sig);
    }
}

/// <summary>The constants FLD1, FLDZ, FLDPI, FLDL2E, FLDL2T, FLDLG2 and FLDLN2 load.</summary>
public enum FpuConstant
{
    One,
    Zero,
    Pi,
    Log2E,
    Log2Ten,
    Log10Two,
    Ln2,
}
