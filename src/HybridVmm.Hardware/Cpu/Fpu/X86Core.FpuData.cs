using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// x87 data transfer, arithmetic and comparison (SDM Vol. 1, 8.3; Vol. 2A for each instruction): FLD/FILD/FBLD and
/// the constants, FST/FSTP/FIST/FISTP/FBSTP, FXCH, FCMOVcc, the four basic operations in all forms, FCOM/FUCOM/FICOM/
/// FCOMI/FUCOMI/FTST/FXAM, FCHS/FABS, FSQRT, FRNDINT, FSCALE, FXTRACT, FPREM/FPREM1.
/// </summary>
public sealed partial class X86Core
{
    private bool X87Data(ref Instruction ins, Mnemonic m)
    {
        switch (m)
        {
            case Mnemonic.Fld or Mnemonic.Fild or Mnemonic.Fbld: return FpuLoad(ref ins);
            case Mnemonic.Fld1: return FpuLoadConstant(ref ins, FpuConstant.One);
            case Mnemonic.Fldz: return FpuLoadConstant(ref ins, FpuConstant.Zero);
            case Mnemonic.Fldpi: return FpuLoadConstant(ref ins, FpuConstant.Pi);
            case Mnemonic.Fldl2e: return FpuLoadConstant(ref ins, FpuConstant.Log2E);
            case Mnemonic.Fldl2t: return FpuLoadConstant(ref ins, FpuConstant.Log2Ten);
            case Mnemonic.Fldlg2: return FpuLoadConstant(ref ins, FpuConstant.Log10Two);
            case Mnemonic.Fldln2: return FpuLoadConstant(ref ins, FpuConstant.Ln2);
            case Mnemonic.Fst or Mnemonic.Fstp or Mnemonic.Fstpnce: return FpuStore(ref ins, pop: m != Mnemonic.Fst);
            case Mnemonic.Fist or Mnemonic.Fistp or Mnemonic.Fbstp: return FpuStore(ref ins, pop: m != Mnemonic.Fist);
            case Mnemonic.Fxch: return Fxch(ref ins);
            case Mnemonic.Fadd or Mnemonic.Fiadd: return FpuArithmetic(ref ins, 0, pop: false);
            case Mnemonic.Faddp: return FpuArithmetic(ref ins, 0, pop: true);
            case Mnemonic.Fsub or Mnemonic.Fisub: return FpuArithmetic(ref ins, 1, pop: false);
            case Mnemonic.Fsubp: return FpuArithmetic(ref ins, 1, pop: true);
            case Mnemonic.Fsubr or Mnemonic.Fisubr: return FpuArithmetic(ref ins, 2, pop: false);
            case Mnemonic.Fsubrp: return FpuArithmetic(ref ins, 2, pop: true);
            case Mnemonic.Fmul or Mnemonic.Fimul: return FpuArithmetic(ref ins, 3, pop: false);
            case Mnemonic.Fmulp: return FpuArithmetic(ref ins, 3, pop: true);
            case Mnemonic.Fdiv or Mnemonic.Fidiv: return FpuArithmetic(ref ins, 4, pop: false);
            case Mnemonic.Fdivp: return FpuArithmetic(ref ins, 4, pop: true);
            case Mnemonic.Fdivr or Mnemonic.Fidivr: return FpuArithmetic(ref ins, 5, pop: false);
            case Mnemonic.Fdivrp: return FpuArithmetic(ref ins, 5, pop: true);
            case Mnemonic.Fcom or Mnemonic.Fucom or Mnemonic.Ficom or Mnemonic.Fcomi or Mnemonic.Fucomi or Mnemonic.Ftst:
                return FpuCompare(ref ins, m, pops: 0);
            case Mnemonic.Fcomp or Mnemonic.Fucomp or Mnemonic.Ficomp or Mnemonic.Fcomip or Mnemonic.Fucomip:
                return FpuCompare(ref ins, m, pops: 1);
            case Mnemonic.Fcompp or Mnemonic.Fucompp:
                return FpuCompare(ref ins, m, pops: 2);
            case Mnemonic.Fxam: return Fxam(ref ins);
            case Mnemonic.Fcmovb or Mnemonic.Fcmove or Mnemonic.Fcmovbe or Mnemonic.Fcmovu
                or Mnemonic.Fcmovnb or Mnemonic.Fcmovne or Mnemonic.Fcmovnbe or Mnemonic.Fcmovnu:
                return Fcmov(ref ins, m);
            case Mnemonic.Fchs or Mnemonic.Fabs or Mnemonic.Fsqrt or Mnemonic.Frndint:
                return FpuUnary(ref ins, m);
            case Mnemonic.Fscale or Mnemonic.Fprem or Mnemonic.Fprem1:
                return FpuWithSt1(ref ins, m);
            case Mnemonic.Fxtract: return Fxtract(ref ins);
            case Mnemonic.Fsin or Mnemonic.Fcos or Mnemonic.Fptan or Mnemonic.Fsincos or Mnemonic.F2xm1
                or Mnemonic.Fpatan or Mnemonic.Fyl2x or Mnemonic.Fyl2xp1:
                return FpuTranscendental(ref ins, m);
            default:
                return UndefinedOpcode(); // FISTTP (SSE3, not reported by CPUID) and anything else
        }
    }

    /// <summary>Reads a memory operand of any x87 source format into an extended value (conversion flags into <paramref name="env"/>).</summary>
    private bool ReadFpuOperand(ref Instruction ins, ref FpuEnvironment env, out Float80 value)
    {
        uint ea = Ea(ref ins);
        value = ins.MemorySize switch
        {
            MemorySize.Float32 => SoftFloat.FromSingle(ref env, ReadMem(ea, 4)),
            MemorySize.Float64 => SoftFloat.FromDouble(ref env, ReadMem64(ea)),
            MemorySize.Float80 => ReadMem80(ea),
            MemorySize.Int16 => SoftFloat.FromInteger((short)ReadMem(ea, 2)),
            MemorySize.Int32 => SoftFloat.FromInteger((int)ReadMem(ea, 4)),
            MemorySize.Int64 => SoftFloat.FromInteger((long)ReadMem64(ea)),
            MemorySize.Bcd => FromBcd(ReadMem64(ea), ReadMem(ea + 8, 2)),
            _ => Float80.Indefinite,
        };
        return !_faulted;
    }

    /// <summary>FBLD: 18 packed BCD digits and a sign byte; digits above 9 give an undefined value (here: taken at face value).</summary>
    private static Float80 FromBcd(ulong low, uint high)
    {
        long v = 0;
        int digitByte = (int)(high & 0xFF);
        v = v * 10 + (digitByte >> 4);
        v = v * 10 + (digitByte & 0xF);
        for (int i = 7; i >= 0; i--)
        {
            int b = (int)(low >> (i * 8)) & 0xFF;
            v = v * 10 + (b >> 4);
            v = v * 10 + (b & 0xF);
        }
        Float80 r = SoftFloat.FromInteger(v);
        return (high & 0x8000) != 0 ? r.Negate() : r;
    }

    private bool FpuLoad(ref Instruction ins)
    {
        ref FpuState f = ref _ctx.Fpu;
        var env = FpuEnv();
        Float80 value;
        if (ins.Op0Kind == OpKind.Memory)
        {
            if (!ReadFpuOperand(ref ins, ref env, out value)) return false;
            NoteFpuInstruction(ref ins);
            if (!f.IsEmpty(7))
            {
                PushFpu(value); // a stack overflow takes precedence over the operand's own exceptions (SDM Vol. 1, 4.9.2)
                return true;
            }
            if (env.SourceDenormal) env.Flags |= FpuExceptions.Denormal;
            if (value.IsSignalingNaN && ins.MemorySize is MemorySize.Float32 or MemorySize.Float64)
            {
                env.Flags |= FpuExceptions.Invalid; // FLD m32fp/m64fp of an SNaN: IE, and the QNaN is loaded (SDM Vol. 2A, FLD)
                value = value.Quieted();
            }
            if (!CommitFlags(ref env)) return true;
        }
        else
        {
            int i = StIndex(ins.Op0Register);
            NoteFpuInstruction(ref ins);
            f.Status &= unchecked((ushort)~FswC1);
            if (f.IsEmpty(i))
            {
                if (!StackFault(overflow: false)) return true;
                value = Float80.Indefinite;
            }
            else
            {
                value = f.St(i);
            }
        }
        PushFpu(value);
        return true;
    }

    private bool FpuLoadConstant(ref Instruction ins, FpuConstant c)
    {
        NoteFpuInstruction(ref ins);
        _ctx.Fpu.Status &= unchecked((ushort)~FswC1);
        PushFpu(SoftFloat.Constant(c, (FpuRounding)((_ctx.Fpu.Control >> 10) & 3)));
        return true;
    }

    private bool FpuStore(ref Instruction ins, bool pop)
    {
        ref FpuState f = ref _ctx.Fpu;
        if (ins.Op0Kind == OpKind.Register)
        {
            // FST/FSTP ST(i): a plain copy, no conversion and no exception but a stack underflow.
            int i = StIndex(ins.Op0Register);
            NoteFpuInstruction(ref ins);
            f.Status &= unchecked((ushort)~FswC1);
            Float80 v;
            if (f.IsEmpty(0))
            {
                if (!StackFault(overflow: false)) return true;
                v = Float80.Indefinite;
            }
            else
            {
                v = f.St(0);
            }
            SetSt(i, v);
            if (pop) PopFpu();
            return true;
        }

        uint ea = Ea(ref ins);
        MemorySize size = ins.MemorySize;
        var env = FpuEnv();
        bool empty = f.IsEmpty(0);
        if (empty && (f.Control & 1) == 0)
        {
            NoteFpuInstruction(ref ins);
            StackFault(overflow: false);
            return true;
        }
        Float80 src = empty ? Float80.Indefinite : f.St(0);
        if (empty) env.Flags |= FpuExceptions.Invalid; // the masked response stores the indefinite of the format
        ulong bits = 0;
        uint high = 0;
        switch (size)
        {
            case MemorySize.Float32: bits = SoftFloat.ToSingle(ref env, src); break;
            case MemorySize.Float64: bits = SoftFloat.ToDouble(ref env, src); break;
            case MemorySize.Float80: bits = src.Significand; high = src.SignExponent; break;
            case MemorySize.Int16: bits = (ulong)SoftFloat.ToInteger(ref env, src, 16); break;
            case MemorySize.Int32: bits = (ulong)SoftFloat.ToInteger(ref env, src, 32); break;
            case MemorySize.Int64: bits = (ulong)SoftFloat.ToInteger(ref env, src, 64); break;
            case MemorySize.Bcd: (bits, high) = ToBcd(ref env, src); break;
            default: return UndefinedOpcode();
        }
        if (empty)
        {
            env.Flags = FpuExceptions.Invalid;
            env.RoundedUp = false;
        }
        // An unmasked invalid, overflow or underflow exception stores nothing and does not pop (SDM Vol. 1, 4.9.1).
        if ((env.Flags & ~env.Masks & (FpuExceptions.Invalid | FpuExceptions.Denormal | FpuExceptions.Overflow | FpuExceptions.Underflow)) == 0)
        {
            switch (size)
            {
                case MemorySize.Float32 or MemorySize.Int32: WriteMem(ea, 4, (uint)bits); break;
                case MemorySize.Int16: WriteMem(ea, 2, (uint)bits); break;
                case MemorySize.Float64 or MemorySize.Int64: WriteMem64(ea, bits); break;
                default: WriteMem64(ea, bits); WriteMem(ea + 8, 2, high); break;
            }
            if (_faulted) return false;
            NoteFpuInstruction(ref ins);
            CommitFlags(ref env);
            if (empty) f.Status |= FswSf;
            if (pop) PopFpu();
            return true;
        }
        NoteFpuInstruction(ref ins);
        CommitFlags(ref env);
        if (empty) f.Status |= FswSf;
        return true;
    }

    /// <summary>FBSTP: rounded by RC to an integer of at most 18 decimal digits, else invalid (the BCD indefinite).</summary>
    private static (ulong Low, uint High) ToBcd(ref FpuEnvironment env, Float80 v)
    {
        long n = SoftFloat.ToInteger(ref env, v, 64);
        ulong magnitude = n < 0 ? (ulong)(-(n + 1)) + 1 : (ulong)n;
        if ((env.Flags & FpuExceptions.Invalid) != 0 || magnitude > 999_999_999_999_999_999UL)
        {
            env.Flags |= FpuExceptions.Invalid;
            env.Flags &= ~FpuExceptions.Precision;
            return (0xC000_0000_0000_0000UL, 0xFFFF);
        }
        ulong low = 0;
        for (int i = 0; i < 16; i++)
        {
            low |= (magnitude % 10) << (4 * i);
            magnitude /= 10;
        }
        uint high = (uint)(magnitude % 10) | (uint)((magnitude / 10) % 10) << 4;
        if (v.Sign) high |= 0x8000;
        return (low, high);
    }

    private bool Fxch(ref Instruction ins)
    {
        ref FpuState f = ref _ctx.Fpu;
        int i = ins.OpCount == 2 ? StIndex(ins.Op1Register) : ins.OpCount == 1 ? StIndex(ins.Op0Register) : 1;
        NoteFpuInstruction(ref ins);
        f.Status &= unchecked((ushort)~FswC1);
        if (f.IsEmpty(0) || f.IsEmpty(i))
        {
            if (!StackFault(overflow: false)) return true;
            if (f.IsEmpty(0)) SetSt(0, Float80.Indefinite);
            if (f.IsEmpty(i)) SetSt(i, Float80.Indefinite);
        }
        (f.St(0), f.St(i)) = (f.St(i), f.St(0));
        return true;
    }

    private bool FpuArithmetic(ref Instruction ins, int op, bool pop)
    {
        ref FpuState f = ref _ctx.Fpu;
        var env = FpuEnv();
        int dst;
        Float80 a, b;
        if (ins.Op0Kind == OpKind.Memory)
        {
            if (!ReadFpuOperand(ref ins, ref env, out b)) return false;
            NoteFpuInstruction(ref ins);
            dst = 0;
            if (f.IsEmpty(0))
            {
                if (StackFault(overflow: false)) SetSt(0, Float80.Indefinite);
                return true;
            }
            a = f.St(0);
        }
        else
        {
            dst = StIndex(ins.Op0Register);
            int src = StIndex(ins.Op1Register);
            NoteFpuInstruction(ref ins);
            if (f.IsEmpty(dst) || f.IsEmpty(src))
            {
                if (StackFault(overflow: false))
                {
                    SetSt(dst, Float80.Indefinite);
                    if (pop) PopFpu();
                }
                return true;
            }
            a = f.St(dst);
            b = f.St(src);
        }
        Float80 r = op switch
        {
            0 => SoftFloat.Add(ref env, a, b),
            1 => SoftFloat.Subtract(ref env, a, b),
            2 => SoftFloat.Subtract(ref env, b, a),
            3 => SoftFloat.Multiply(ref env, a, b),
            4 => SoftFloat.Divide(ref env, a, b),
            _ => SoftFloat.Divide(ref env, b, a),
        };
        if (CommitFlags(ref env))
        {
            SetSt(dst, r);
            if (pop) PopFpu();
        }
        return true;
    }

    private bool FpuCompare(ref Instruction ins, Mnemonic m, int pops)
    {
        ref FpuState f = ref _ctx.Fpu;
        var env = FpuEnv();
        Float80 b = Float80.Zero;
        bool operandEmpty = false;
        if (ins.Op0Kind == OpKind.Memory)
        {
            if (!ReadFpuOperand(ref ins, ref env, out b)) return false;
        }
        else if (m != Mnemonic.Ftst)
        {
            int i = ins.OpCount == 2 ? StIndex(ins.Op1Register) : ins.OpCount == 1 ? StIndex(ins.Op0Register) : 1;
            operandEmpty = f.IsEmpty(i);
            b = f.St(i);
        }
        NoteFpuInstruction(ref ins);
        bool eflagsForm = m is Mnemonic.Fcomi or Mnemonic.Fcomip or Mnemonic.Fucomi or Mnemonic.Fucomip;
        FpuComparison result;
        if (f.IsEmpty(0) || operandEmpty)
        {
            if (!StackFault(overflow: false)) return true;
            result = FpuComparison.Unordered;
        }
        else
        {
            bool quiet = m is Mnemonic.Fucom or Mnemonic.Fucomp or Mnemonic.Fucompp or Mnemonic.Fucomi or Mnemonic.Fucomip;
            result = SoftFloat.Compare(ref env, f.St(0), b, quiet);
            env.RoundedUp = false;
            if (!CommitFlags(ref env)) return true;
        }
        if (eflagsForm)
        {
            // ZF, PF, CF as an unsigned compare would set them; OF, SF and AF cleared (SDM Vol. 2A, FCOMI).
            uint flags = result switch
            {
                FpuComparison.Greater => 0u,
                FpuComparison.Less => CF,
                FpuComparison.Equal => ZF,
                _ => ZF | PF | CF,
            };
            _ctx.Eflags = (_ctx.Eflags & ~(ZF | PF | CF | OF | SF | AF)) | flags;
        }
        else
        {
            ushort cc = result switch
            {
                FpuComparison.Greater => 0,
                FpuComparison.Less => FswC0,
                FpuComparison.Equal => FswC3,
                _ => FswC0 | FswC2 | FswC3,
            };
            f.Status = (ushort)((f.Status & ~(FswC0 | FswC2 | FswC3)) | cc);
        }
        for (int p = 0; p < pops; p++) PopFpu();
        return true;
    }

    /// <summary>FXAM: the class of ST(0) in C3, C2, C0 and its sign in C1, also for an empty register (SDM Vol. 2A, FXAM).</summary>
    private bool Fxam(ref Instruction ins)
    {
        ref FpuState f = ref _ctx.Fpu;
        NoteFpuInstruction(ref ins);
        Float80 v = f.St(0);
        ushort cc;
        if (f.IsEmpty(0)) cc = FswC3 | FswC0;
        else if (v.IsUnsupported) cc = 0;
        else if (v.IsNaN) cc = FswC0;
        else if (v.IsInfinity) cc = FswC2 | FswC0;
        else if (v.IsZero) cc = FswC3;
        else if (v.IsDenormal) cc = FswC3 | FswC2;
        else cc = FswC2;
        if (v.Sign) cc |= FswC1;
        f.Status = (ushort)((f.Status & ~FswConditions) | cc);
        return true;
    }

    private bool Fcmov(ref Instruction ins, Mnemonic m)
    {
        ref FpuState f = ref _ctx.Fpu;
        int i = StIndex(ins.Op1Register);
        NoteFpuInstruction(ref ins);
        uint fl = _ctx.Eflags;
        bool cf = (fl & CF) != 0, zf = (fl & ZF) != 0, pf = (fl & PF) != 0;
        bool take = m switch
        {
            Mnemonic.Fcmovb => cf,
            Mnemonic.Fcmove => zf,
            Mnemonic.Fcmovbe => cf || zf,
            Mnemonic.Fcmovu => pf,
            Mnemonic.Fcmovnb => !cf,
            Mnemonic.Fcmovne => !zf,
            Mnemonic.Fcmovnbe => !cf && !zf,
            _ => !pf,
        };
        // C1 is left as it was (the host processor does so; the SDM says "set to 0" only for an underflow).
        if (f.IsEmpty(0) || f.IsEmpty(i))
        {
            if (StackFault(overflow: false)) SetSt(0, Float80.Indefinite);
            return true;
        }
        if (take) SetSt(0, f.St(i));
        return true;
    }

    private bool FpuUnary(ref Instruction ins, Mnemonic m)
    {
        ref FpuState f = ref _ctx.Fpu;
        NoteFpuInstruction(ref ins);
        if (f.IsEmpty(0))
        {
            if (StackFault(overflow: false)) SetSt(0, Float80.Indefinite);
            return true;
        }
        var env = FpuEnv();
        Float80 a = f.St(0);
        Float80 r = m switch
        {
            Mnemonic.Fchs => a.Negate(),
            Mnemonic.Fabs => a.Abs(),
            Mnemonic.Fsqrt => SoftFloat.Sqrt(ref env, a),
            _ => SoftFloat.RoundToIntegral(ref env, a),
        };
        if (CommitFlags(ref env)) SetSt(0, r);
        return true;
    }

    private bool FpuWithSt1(ref Instruction ins, Mnemonic m)
    {
        ref FpuState f = ref _ctx.Fpu;
        NoteFpuInstruction(ref ins);
        if (f.IsEmpty(0) || f.IsEmpty(1))
        {
            if (StackFault(overflow: false)) SetSt(0, Float80.Indefinite);
            return true;
        }
        var env = FpuEnv();
        if (m == Mnemonic.Fscale)
        {
            Float80 r = SoftFloat.Scale(ref env, f.St(0), f.St(1));
            if (CommitFlags(ref env)) SetSt(0, r);
            return true;
        }
        Float80 rem = SoftFloat.Remainder(ref env, f.St(0), f.St(1), ieee: m == Mnemonic.Fprem1, out int q, out bool incomplete);
        if (CommitFlags(ref env))
        {
            SetSt(0, rem);
            // C2: incomplete reduction; C0, C3, C1: quotient bits 2, 1, 0 (SDM Vol. 2A, FPREM).
            ushort cc = (ushort)((incomplete ? FswC2 : 0) | ((q & 4) != 0 ? FswC0 : 0) | ((q & 2) != 0 ? FswC3 : 0) | ((q & 1) != 0 ? FswC1 : 0));
            f.Status = (ushort)((f.Status & ~FswConditions) | cc);
        }
        return true;
    }

    private bool Fxtract(ref Instruction ins)
    {
        ref FpuState f = ref _ctx.Fpu;
        NoteFpuInstruction(ref ins);
        f.Status &= unchecked((ushort)~FswC1);
        if (f.IsEmpty(0))
        {
            if (StackFault(overflow: false))
            {
                SetSt(0, Float80.Indefinite);
                PushFpu(Float80.Indefinite);
            }
            return true;
        }
        var env = FpuEnv();
        (Float80 exponent, Float80 significand) = SoftFloat.Extract(ref env, f.St(0));
        if (!CommitFlags(ref env)) return true;
        SetSt(0, exponent);
        PushFpu(significand);
        return true;
    }
}
