using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X and FYL2XP1. These are <b>approximate</b>: the special cases
/// (NaNs, infinities, zeros, out-of-range arguments with C2 = 1, empty registers) follow the SDM exactly, but the
/// value of a finite result is computed through the host's double-precision library and widened, so its low 11
/// significand bits are not those of an x87 (docs/cpu-core.md). PE is always reported for such a result.
/// </summary>
public sealed partial class X86Core
{
    private static double ToHostDouble(Float80 v)
    {
        var env = new FpuEnvironment(FpuRounding.Nearest, 53);
        return BitConverter.UInt64BitsToDouble(SoftFloat.ToDouble(ref env, v));
    }

    private static Float80 FromHostDouble(double d)
    {
        var env = new FpuEnvironment(FpuRounding.Nearest);
        return SoftFloat.FromDouble(ref env, BitConverter.DoubleToUInt64Bits(d));
    }

    private bool FpuTranscendental(ref Instruction ins, Mnemonic m)
    {
        ref FpuState f = ref _ctx.Fpu;
        NoteFpuInstruction(ref ins);
        bool binary = m is Mnemonic.Fpatan or Mnemonic.Fyl2x or Mnemonic.Fyl2xp1;
        f.Status &= unchecked((ushort)~(FswC1 | (binary ? 0 : FswC2)));
        if (f.IsEmpty(0) || (binary && f.IsEmpty(1)))
        {
            if (!StackFault(overflow: false)) return true;
            if (binary)
            {
                SetSt(1, Float80.Indefinite);
                PopFpu();
            }
            else
            {
                SetSt(0, Float80.Indefinite);
                if (m is Mnemonic.Fsincos or Mnemonic.Fptan) PushFpu(Float80.Indefinite);
            }
            return true;
        }

        var env = FpuEnv();
        Float80 x = f.St(0);
        if (binary)
        {
            Float80 y = f.St(1);
            Float80 r;
            if (SoftFloat.PropagateNaN(ref env, x, y, out Float80 nan)) r = nan;
            else r = BinaryTranscendental(ref env, m, x, y);
            if (CommitFlags(ref env))
            {
                SetSt(1, r);
                PopFpu();
            }
            return true;
        }

        if (x.IsNaN || x.IsUnsupported)
        {
            SoftFloat.PropagateNaN(ref env, x, x, out Float80 nan);
            if (!CommitFlags(ref env)) return true;
            SetSt(0, nan);
            if (m is Mnemonic.Fsincos or Mnemonic.Fptan) PushFpu(nan);
            return true;
        }
        if (m != Mnemonic.F2xm1)
        {
            if (x.IsInfinity)
            {
                env.Flags |= FpuExceptions.Invalid;
                if (!CommitFlags(ref env)) return true;
                SetSt(0, Float80.Indefinite);
                if (m is Mnemonic.Fsincos or Mnemonic.Fptan) PushFpu(Float80.Indefinite);
                return true;
            }
            // |x| ≥ 2^63: out of range, C2 = 1 and ST(0) unchanged (SDM Vol. 2A, FSIN).
            if (x.BiasedExponent >= Float80.Bias + 63)
            {
                f.Status |= FswC2;
                return true;
            }
        }
        if (x.IsDenormal) env.Flags |= FpuExceptions.Denormal;
        double d = ToHostDouble(x);
        Float80 first, second = Float80.One;
        switch (m)
        {
            case Mnemonic.Fsin: first = Approx(ref env, x, Math.Sin(d)); break;
            case Mnemonic.Fcos: first = x.IsZero ? Float80.One : Approx(ref env, x, Math.Cos(d)); break;
            case Mnemonic.Fptan: first = Approx(ref env, x, Math.Tan(d)); break;
            case Mnemonic.Fsincos:
                first = Approx(ref env, x, Math.Sin(d));
                second = x.IsZero ? Float80.One : Approx(ref env, x, Math.Cos(d));
                break;
            default:
                // F2XM1 is defined for -1 ≤ x ≤ +1; outside, the result is undefined (here: the formula anyway).
                first = x.IsInfinity ? (x.Sign ? Float80.One.Negate() : x) : Approx(ref env, x, x.IsZero ? d : Math.Pow(2, d) - 1);
                break;
        }
        if (!CommitFlags(ref env)) return true;
        if (m == Mnemonic.Fsincos)
        {
            SetSt(0, first);
            PushFpu(second);
        }
        else if (m == Mnemonic.Fptan)
        {
            SetSt(0, first);
            PushFpu(Float80.One);
        }
        else
        {
            SetSt(0, first);
        }
        return true;
    }

    /// <summary>A transcendental result of a finite argument: exact for a zero argument, otherwise inexact (PE).</summary>
    private static Float80 Approx(ref FpuEnvironment env, Float80 x, double value)
    {
        if (x.IsZero) return x;
        env.Flags |= FpuExceptions.Precision;
        return FromHostDouble(value);
    }

    private static Float80 BinaryTranscendental(ref FpuEnvironment env, Mnemonic m, Float80 x, Float80 y)
    {
        if (x.IsDenormal || y.IsDenormal) env.Flags |= FpuExceptions.Denormal;
        double dx = ToHostDouble(x), dy = ToHostDouble(y);
        switch (m)
        {
            case Mnemonic.Fpatan:
                double a = Math.Atan2(dy, dx);
                if (y.IsZero && !x.Sign) return y;
                env.Flags |= FpuExceptions.Precision;
                return FromHostDouble(a);
            case Mnemonic.Fyl2x:
                if (x.Sign && !x.IsZero) return Invalid(ref env);
                if (x.IsZero)
                {
                    if (y.IsZero) return Invalid(ref env);
                    if (!y.IsInfinity) env.Flags |= FpuExceptions.ZeroDivide;
                    return y.Sign ? Float80.PositiveInfinity : Float80.NegativeInfinity;
                }
                if (x.IsInfinity && y.IsZero) return Invalid(ref env);
                if (x == Float80.One && y.IsInfinity) return Invalid(ref env);
                return Inexact(ref env, dy * Math.Log2(dx));
            default:
                if (x.IsZero) return y.IsInfinity ? Invalid(ref env) : Float80.Make(x.Sign ^ y.Sign, 0, 0);
                if (y.IsZero && x.IsInfinity) return Invalid(ref env);
                return Inexact(ref env, dy * Math.Log2(1 + dx));
        }
    }

    private static Float80 Inexact(ref FpuEnvironment env, double v)
    {
        if (double.IsNaN(v)) return Invalid(ref env);
        if (v != 0 && !double.IsInfinity(v)) env.Flags |= FpuExceptions.Precision;
        return FromHostDouble(v);
    }

    private static Float80 Invalid(ref FpuEnvironment env)
    {
        env.Flags |= FpuExceptions.Invalid;
        return Float80.Indefinite;
    }
}
