namespace HybridVmm.Hardware.Cpu;

/// <summary>Result of an x87 comparison (FCOM, FUCOM, FCOMI, FTST, FICOM).</summary>
public enum FpuComparison
{
    Greater,
    Less,
    Equal,
    Unordered,
}

public static partial class SoftFloat
{
    /// <summary>
    /// The x87 NaN rules (SDM Vol. 1, table 4-7): an SNaN operand is invalid (IE); the result is the quieted NaN, and of
    /// two NaNs the one with the larger significand (the positive one if they tie). Unsupported encodings are invalid
    /// and give the real indefinite. True when a NaN or unsupported operand decided the result.
    /// </summary>
    internal static bool PropagateNaN(ref FpuEnvironment env, Float80 a, Float80 b, out Float80 result)
    {
        if (a.IsUnsupported || b.IsUnsupported)
        {
            env.Flags |= FpuExceptions.Invalid;
            result = Float80.Indefinite;
            return true;
        }
        bool an = a.IsNaN, bn = b.IsNaN;
        if (!an && !bn)
        {
            result = default;
            return false;
        }
        if (a.IsSignalingNaN || b.IsSignalingNaN) env.Flags |= FpuExceptions.Invalid;
        if (an && bn && a.IsSignalingNaN != b.IsSignalingNaN)
        {
            result = a.IsSignalingNaN ? b : a; // an SNaN and a QNaN: the QNaN (SDM Vol. 1, table 4-7)
        }
        else if (an && bn)
        {
            ulong ma = a.Significand | Float80.QuietBit, mb = b.Significand | Float80.QuietBit;
            result = ma > mb ? a : mb > ma ? b : (a.Sign ? b : a);
        }
        else
        {
            result = an ? a : b;
        }
        result = result.Quieted();
        return true;
    }

    private static Float80 PropagateNaN(ref FpuEnvironment env, Float80 a)
    {
        if (a.IsUnsupported)
        {
            env.Flags |= FpuExceptions.Invalid;
            return Float80.Indefinite;
        }
        if (a.IsSignalingNaN) env.Flags |= FpuExceptions.Invalid;
        return a.Quieted();
    }

    private static Float80 Invalid(ref FpuEnvironment env)
    {
        env.Flags |= FpuExceptions.Invalid;
        return Float80.Indefinite;
    }

    private static void NoteDenormals(ref FpuEnvironment env, Float80 a, Float80 b)
    {
        if (a.IsDenormal || b.IsDenormal || env.SourceDenormal) env.Flags |= FpuExceptions.Denormal;
    }

    private static Float80 ZeroOf(bool sign) => sign ? Float80.NegativeZero : Float80.Zero;
    private static Float80 InfinityOf(bool sign) => sign ? Float80.NegativeInfinity : Float80.PositiveInfinity;

    /// <summary>Rounds a finite value to the environment's precision, as an arithmetic result (x + 0 is rounded too).</summary>
    private static Float80 RoundValue(ref FpuEnvironment env, Float80 a)
    {
        Unpack(a, out bool s, out int e, out ulong m);
        return RoundToExtended(ref env, s, e, (UInt128)m << 64, env.Precision);
    }

    public static Float80 Add(ref FpuEnvironment env, Float80 a, Float80 b) => AddSigned(ref env, a, b, negateB: false);

    public static Float80 Subtract(ref FpuEnvironment env, Float80 a, Float80 b) => AddSigned(ref env, a, b, negateB: true);

    private static Float80 AddSigned(ref FpuEnvironment env, Float80 a, Float80 b, bool negateB)
    {
        env.RoundedUp = false;
        if (PropagateNaN(ref env, a, b, out Float80 nan)) return nan;
        NoteDenormals(ref env, a, b);
        if (negateB) b = b.Negate();
        if (a.IsInfinity || b.IsInfinity)
        {
            if (a.IsInfinity && b.IsInfinity && a.Sign != b.Sign) return Invalid(ref env);
            return a.IsInfinity ? a : b;
        }
        if (a.IsZero && b.IsZero)
        {
            return a.Sign == b.Sign ? a : ZeroOf(env.Rounding == FpuRounding.Down);
        }
        if (b.IsZero) return RoundValue(ref env, a);
        if (a.IsZero) return RoundValue(ref env, b);

        Unpack(a, out bool sa, out int ea, out ulong ma);
        Unpack(b, out bool sb, out int eb, out ulong mb);
        if (ea < eb)
        {
            (sa, sb) = (sb, sa);
            (ea, eb) = (eb, ea);
            (ma, mb) = (mb, ma);
        }
        UInt128 x = (UInt128)ma << 64;
        UInt128 y = ShiftRightJam((UInt128)mb << 64, ea - eb);
        int exp = ea; // value = x × 2^(exp − 127)
        if (sa == sb)
        {
            UInt128 sum = x + y;
            if (sum < x)
            {
                sum = (sum >> 1) | (sum & 1) | (UInt128.One << 127);
                exp++;
            }
            return RoundToExtended(ref env, sa, exp, sum, env.Precision);
        }
        if (x == y) return ZeroOf(env.Rounding == FpuRounding.Down);
        return x > y
            ? RoundToExtended(ref env, sa, exp, x - y, env.Precision)
            : RoundToExtended(ref env, sb, exp, y - x, env.Precision);
    }

    public static Float80 Multiply(ref FpuEnvironment env, Float80 a, Float80 b)
    {
        env.RoundedUp = false;
        if (PropagateNaN(ref env, a, b, out Float80 nan)) return nan;
        NoteDenormals(ref env, a, b);
        bool sign = a.Sign ^ b.Sign;
        if (a.IsInfinity || b.IsInfinity)
        {
            if (a.IsZero || b.IsZero) return Invalid(ref env);
            return InfinityOf(sign);
        }
        if (a.IsZero || b.IsZero) return ZeroOf(sign);
        Unpack(a, out _, out int ea, out ulong ma);
        Unpack(b, out _, out int eb, out ulong mb);
        ulong hi = Math.BigMul(ma, mb, out ulong lo);
        return RoundToExtended(ref env, sign, ea + eb + 1, ((UInt128)hi << 64) | lo, env.Precision);
    }

    public static Float80 Divide(ref FpuEnvironment env, Float80 a, Float80 b)
    {
        env.RoundedUp = false;
        if (PropagateNaN(ref env, a, b, out Float80 nan)) return nan;
        bool sign = a.Sign ^ b.Sign;
        if (a.IsInfinity)
        {
            if (b.IsInfinity) return Invalid(ref env);
            NoteDenormals(ref env, a, b);
            return InfinityOf(sign);
        }
        if (b.IsInfinity)
        {
            NoteDenormals(ref env, a, b);
            return ZeroOf(sign);
        }
        if (b.IsZero)
        {
            if (a.IsZero) return Invalid(ref env);
            env.Flags |= FpuExceptions.ZeroDivide; // takes precedence over a denormal dividend (SDM Vol. 1, 4.9.2)
            return InfinityOf(sign);
        }
        NoteDenormals(ref env, a, b);
        if (a.IsZero) return ZeroOf(sign);
        Unpack(a, out _, out int ea, out ulong ma);
        Unpack(b, out _, out int eb, out ulong mb);
        int s = ma >= mb ? 1 : 0;
        UInt128 n = (UInt128)ma << (64 - s);
        UInt128 q1 = n / mb;
        ulong r1 = (ulong)(n % mb);
        UInt128 n2 = (UInt128)r1 << 64;
        UInt128 q2 = n2 / mb;
        ulong r2 = (ulong)(n2 % mb);
        UInt128 q = (q1 << 64) | q2 | (r2 != 0 ? UInt128.One : UInt128.Zero);
        return RoundToExtended(ref env, sign, ea - eb - 1 + s, q, env.Precision);
    }

    public static Float80 Sqrt(ref FpuEnvironment env, Float80 a)
    {
        env.RoundedUp = false;
        if (a.IsNaN || a.IsUnsupported) return PropagateNaN(ref env, a);
        if (a.IsZero) return a;
        if (a.Sign) return Invalid(ref env);
        if (a.IsInfinity) return a;
        if (a.IsDenormal) env.Flags |= FpuExceptions.Denormal;
        Unpack(a, out _, out int ea, out ulong ma);
        int k = (ea & 1) == 1 ? 64 : 63;
        UInt128 n = (UInt128)ma << k;
        ulong r = IntegerSqrt(n);
        UInt128 rem = n - (UInt128)r * r;
        ulong low = rem == 0 ? 0 : rem > r ? 0x8000_0000_0000_0001UL : 1UL;
        int exp = (ea - 63 - k) / 2 + 63;
        return RoundToExtended(ref env, false, exp, ((UInt128)r << 64) | low, env.Precision);
    }

    /// <summary>floor(√n) for n in [2^126, 2^128): an estimate, then exact integer correction.</summary>
    private static ulong IntegerSqrt(UInt128 n)
    {
        UInt128 r = (UInt128)(ulong)Math.Min(Math.Sqrt((double)n), 18446744073709549568.0);
        if (r == 0) r = 1;
        for (int i = 0; i < 3; i++) r = (r + n / r) >> 1;
        while (r * r > n) r--;
        while ((r + 1) * (r + 1) <= n) r++;
        return (ulong)r;
    }

    /// <summary>Compares two values; <paramref name="quiet"/> (FUCOM) raises IE only for SNaNs, otherwise any NaN is invalid.</summary>
    public static FpuComparison Compare(ref FpuEnvironment env, Float80 a, Float80 b, bool quiet)
    {
        if (a.IsUnsupported || b.IsUnsupported)
        {
            env.Flags |= FpuExceptions.Invalid;
            return FpuComparison.Unordered;
        }
        if (a.IsNaN || b.IsNaN)
        {
            if (!quiet || a.IsSignalingNaN || b.IsSignalingNaN) env.Flags |= FpuExceptions.Invalid;
            return FpuComparison.Unordered;
        }
        NoteDenormals(ref env, a, b);
        if (a.IsZero && b.IsZero) return FpuComparison.Equal;
        if (a.Sign != b.Sign) return a.Sign ? FpuComparison.Less : FpuComparison.Greater;
        int c = CompareMagnitude(a, b);
        if (c == 0) return FpuComparison.Equal;
        return (c > 0) ^ a.Sign ? FpuComparison.Greater : FpuComparison.Less;
    }

    private static int CompareMagnitude(Float80 a, Float80 b)
    {
        if (a.IsZero) return b.IsZero ? 0 : -1;
        if (b.IsZero) return 1;
        if (a.IsInfinity) return b.IsInfinity ? 0 : 1;
        if (b.IsInfinity) return -1;
        Unpack(a, out _, out int ea, out ulong ma);
        Unpack(b, out _, out int eb, out ulong mb);
        if (ea != eb) return ea > eb ? 1 : -1;
        return ma.CompareTo(mb);
    }

    /// <summary>
    /// Rounds a finite value to an integer magnitude by <paramref name="rc"/>; false when it is 2^64 or more
    /// (<paramref name="magnitude"/> is then meaningless). Sets <paramref name="inexact"/> and <paramref name="roundedUp"/>.
    /// </summary>
    internal static bool ToIntegerMagnitude(Float80 a, FpuRounding rc, out ulong magnitude, out bool inexact, out bool roundedUp)
    {
        magnitude = 0;
        inexact = roundedUp = false;
        if (a.IsZero) return true;
        Unpack(a, out bool sign, out int ea, out ulong ma);
        if (ea >= 64) return false;
        if (ea >= 63)
        {
            magnitude = ma;
            return true;
        }
        int drop = 63 - ea;
        ulong keep;
        bool above, half;
        if (drop > 64)
        {
            keep = 0;
            above = half = false;
        }
        else if (drop == 64)
        {
            keep = 0;
            above = ma > Float80.IntegerBit;
            half = ma == Float80.IntegerBit;
        }
        else
        {
            keep = ma >> drop;
            ulong rem = ma & ((1UL << drop) - 1);
            ulong h = 1UL << (drop - 1);
            above = rem > h;
            half = rem == h;
        }
        inexact = drop >= 64 || (ma & ((1UL << drop) - 1)) != 0;
        roundedUp = RoundUp(rc, sign, (keep & 1) != 0, above, half, inexact);
        magnitude = keep + (roundedUp ? 1UL : 0);
        return true;
    }

    /// <summary>FRNDINT: rounds to an integral value by RC (precision control does not apply; SDM Vol. 1, 8.1.5.2).</summary>
    public static Float80 RoundToIntegral(ref FpuEnvironment env, Float80 a)
    {
        env.RoundedUp = false;
        if (a.IsNaN || a.IsUnsupported) return PropagateNaN(ref env, a);
        if (a.IsInfinity || a.IsZero) return a;
        if (a.IsDenormal) env.Flags |= FpuExceptions.Denormal;
        if (!ToIntegerMagnitude(a, env.Rounding, out ulong m, out bool inexact, out bool up)) return a;
        if (inexact)
        {
            env.Flags |= FpuExceptions.Precision;
            env.RoundedUp = up;
        }
        return FromMagnitude(a.Sign, m);
    }

    private static Float80 FromMagnitude(bool sign, ulong m)
    {
        if (m == 0) return ZeroOf(sign);
        int lz = System.Numerics.BitOperations.LeadingZeroCount(m);
        return Float80.Make(sign, Float80.Bias + 63 - lz, m << lz);
    }

    /// <summary>FSCALE: a × 2^trunc(b), rounded only when the result leaves the normal range (SDM Vol. 2A, FSCALE).</summary>
    public static Float80 Scale(ref FpuEnvironment env, Float80 a, Float80 b)
    {
        env.RoundedUp = false;
        if (PropagateNaN(ref env, a, b, out Float80 nan)) return nan;
        NoteDenormals(ref env, a, b);
        if (b.IsInfinity)
        {
            if (!b.Sign) return a.IsZero ? Invalid(ref env) : a.IsInfinity ? a : InfinityOf(a.Sign);
            return a.IsInfinity ? Invalid(ref env) : ZeroOf(a.Sign);
        }
        if (a.IsZero || a.IsInfinity) return a;
        long n;
        if (b.IsZero)
        {
            n = 0;
        }
        else
        {
            Unpack(b, out bool sb, out int eb, out ulong mb);
            long t = eb < 0 ? 0 : eb >= 20 ? 1L << 20 : (long)(mb >> (63 - eb));
            n = sb ? -t : t;
        }
        Unpack(a, out bool sa, out int ea, out ulong ma);
        return RoundToExtended(ref env, sa, (int)(ea + n), (UInt128)ma << 64, 64);
    }

    /// <summary>
    /// FPREM (<paramref name="ieee"/> false: quotient truncated) and FPREM1 (quotient rounded to nearest even), SDM Vol. 2A.
    /// Exact. When the exponents differ by 64 or more the reduction is partial (C2 = 1): it removes 2^(d − 32) multiples.
    /// <paramref name="quotientBits"/> holds the low three quotient bits, <paramref name="incomplete"/> says C2.
    /// </summary>
    public static Float80 Remainder(ref FpuEnvironment env, Float80 a, Float80 b, bool ieee, out int quotientBits, out bool incomplete)
    {
        quotientBits = 0;
        incomplete = false;
        env.RoundedUp = false;
        if (PropagateNaN(ref env, a, b, out Float80 nan)) return nan;
        if (a.IsInfinity || b.IsZero) return Invalid(ref env);
        NoteDenormals(ref env, a, b);
        if (b.IsInfinity || a.IsZero) return a;
        Unpack(a, out bool sa, out int ea, out ulong ma);
        Unpack(b, out _, out int eb, out ulong mb);
        int d = ea - eb;
        if (d >= 64)
        {
            // Partial remainder: reduce by b × 2^(d − 32) (an implementation-defined N = 32, SDM Vol. 2A, FPREM).
            incomplete = true;
            eb += d - 32;
            d = 32;
            ieee = false;
        }
        if (d < -1) return a;
        UInt128 n = d >= 0 ? (UInt128)ma << d : ma;
        UInt128 m = d >= 0 ? mb : (UInt128)mb << 1;
        int remExp = d >= 0 ? eb : eb - 1; // the remainder is in units of m: value = rem × 2^(remExp − 63)
        UInt128 q = n / m;
        UInt128 r = n % m;
        bool sign = sa;
        if (ieee && !incomplete)
        {
            UInt128 twice = r << 1;
            if (twice > m || (twice == m && (q & 1) != 0))
            {
                q++;
                r = m - r;
                sign = !sign;
            }
        }
        if (!incomplete) quotientBits = (int)(q & 7);
        if (r == 0) return ZeroOf(sa);
        var exact = new FpuEnvironment(FpuRounding.Nearest, 64);
        Float80 result = RoundToExtended(ref exact, sign, remExp, r << 64, 64);
        if ((exact.Flags & FpuExceptions.Underflow) != 0) env.Flags |= FpuExceptions.Underflow;
        return result;
    }

    /// <summary>FXTRACT: the unbiased exponent and the significand (with exponent 0) of a finite value (SDM Vol. 2A).</summary>
    public static (Float80 Exponent, Float80 Significand) Extract(ref FpuEnvironment env, Float80 a)
    {
        env.RoundedUp = false;
        if (a.IsNaN || a.IsUnsupported)
        {
            Float80 n = PropagateNaN(ref env, a);
            return (n, n);
        }
        if (a.IsInfinity) return (Float80.PositiveInfinity, a);
        if (a.IsZero)
        {
            env.Flags |= FpuExceptions.ZeroDivide;
            return (Float80.NegativeInfinity, a);
        }
        if (a.IsDenormal) env.Flags |= FpuExceptions.Denormal;
        Unpack(a, out bool s, out int e, out ulong m);
        return (FromInteger(e), Float80.Make(s, Float80.Bias, m));
    }
}
