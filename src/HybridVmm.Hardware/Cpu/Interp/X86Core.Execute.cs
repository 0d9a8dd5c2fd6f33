using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>The dispatch switch. Handlers return false when they stop with an exit recorded in <see cref="_exit"/>.</summary>
public sealed partial class X86Core
{
    private static readonly Operation[] OperationByCode = OperationTable.ByCode;
    private static readonly ConditionCode[] ConditionByCode = OperationTable.Condition;

    private bool Execute(ref Instruction ins)
    {
        bool ok = OperationByCode[(int)ins.Code] switch
        {
            Operation.Mov => Mov(ref ins),
            Operation.Movzx => MovExtend(ref ins, signExtend: false),
            Operation.Movsx => MovExtend(ref ins, signExtend: true),
            Operation.Lea => Lea(ref ins),
            Operation.Xchg => Xchg(ref ins),
            Operation.Push => PushOperand(ref ins),
            Operation.Pop => PopOperand(ref ins),
            Operation.MovSreg => MovSreg(ref ins),
            Operation.MovCr => MovCr(ref ins),
            Operation.MovDr => MovDr(ref ins),
            Operation.Invlpg => Invlpg(ref ins),
            Operation.JmpFar => FarJmp(ref ins),
            Operation.CallFar => FarCall(ref ins),
            Operation.Retf => Retf(ref ins),
            Operation.LoadFarPointer => LoadFarPointer(ref ins),
            // Not recognized in real-address mode (SDM Vol. 2A/2B, "Real-Address Mode Exceptions": #UD).
            Operation.Lldt or Operation.Sldt or Operation.Ltr or Operation.Str or Operation.Lar or Operation.Lsl or Operation.Verr
                or Operation.Verw or Operation.Arpl when RealMode => UndefinedOpcode(),
            Operation.Sysenter or Operation.Sysexit when RealMode => Fault(ExceptionVector.GeneralProtection), // SDM Vol. 2B: CR0.PE = 0
            Operation.Lldt => Lldt(ref ins),
            Operation.Sldt => Sldt(ref ins),
            Operation.Ltr => Ltr(ref ins),
            Operation.Str => Str(ref ins),
            Operation.Lar => LarLsl(ref ins, lar: true),
            Operation.Lsl => LarLsl(ref ins, lar: false),
            Operation.Verr => Verify(ref ins, write: false),
            Operation.Verw => Verify(ref ins, write: true),
            Operation.Arpl => Arpl(ref ins),
            Operation.Smsw => Smsw(ref ins),
            Operation.Lmsw => Lmsw(ref ins),
            Operation.Clts => Clts(),
            Operation.Add => Add(ref ins),
            Operation.Adc => Adc(ref ins),
            Operation.Sub => Sub(ref ins),
            Operation.Sbb => Sbb(ref ins),
            Operation.And => And(ref ins),
            Operation.Or => Or(ref ins),
            Operation.Xor => Xor(ref ins),
            Operation.Cmp => Cmp(ref ins),
            Operation.Test => Test(ref ins),
            Operation.Inc => IncDec(ref ins, inc: true),
            Operation.Dec => IncDec(ref ins, inc: false),
            Operation.Neg => Neg(ref ins),
            Operation.Not => Not(ref ins),
            Operation.Mul => Mul(ref ins),
            Operation.Imul => Imul(ref ins),
            Operation.Div => Div(ref ins),
            Operation.Idiv => Idiv(ref ins),
            Operation.Rol or Operation.Ror or Operation.Rcl or Operation.Rcr or Operation.Shl or Operation.Shr
                or Operation.Sar => Shift(ref ins, OperationByCode[(int)ins.Code]),
            Operation.Shld => DoubleShift(ref ins, left: true),
            Operation.Shrd => DoubleShift(ref ins, left: false),
            Operation.Cbw => Cbw(),
            Operation.Cwde => Cwde(),
            Operation.Cwd => Cwd(),
            Operation.Cdq => Cdq(),
            Operation.Jcc => Jcc(ref ins),
            Operation.Jmp => Jmp(ref ins),
            Operation.Call => Call(ref ins),
            Operation.Ret => Ret(ref ins),
            Operation.Setcc => Setcc(ref ins),
            Operation.Cmovcc => Cmovcc(ref ins),
            Operation.Loop or Operation.Loope or Operation.Loopne or Operation.Jecxz => Loop(ref ins, OperationByCode[(int)ins.Code]),
            Operation.Bt or Operation.Bts or Operation.Btr or Operation.Btc => BitTest(ref ins, OperationByCode[(int)ins.Code]),
            Operation.Bsf => BitScan(ref ins, forward: true),
            Operation.Bsr => BitScan(ref ins, forward: false),
            Operation.Bswap => Bswap(ref ins),
            Operation.Xadd => Xadd(ref ins),
            Operation.Cmpxchg => Cmpxchg(ref ins),
            Operation.Cmpxchg8b => Cmpxchg8b(ref ins),
            Operation.Movs or Operation.Stos or Operation.Lods or Operation.Cmps or Operation.Scas
                => StringOp(ref ins, OperationByCode[(int)ins.Code]),
            Operation.Ins => Ins(ref ins),
            Operation.Outs => Outs(ref ins),
            Operation.Daa => Daa(),
            Operation.Das => Das(),
            Operation.Aaa => Aaa(),
            Operation.Aas => Aas(),
            Operation.Aam => Aam(ref ins),
            Operation.Aad => Aad(ref ins),
            Operation.Enter => Enter(ref ins),
            Operation.Leave => Leave(ref ins),
            Operation.Pusha => Pusha(ref ins),
            Operation.Popa => Popa(ref ins),
            Operation.Pushf => Pushf(ref ins),
            Operation.Popf => Popf(ref ins),
            Operation.Lahf => Lahf(),
            Operation.Sahf => Sahf(),
            Operation.Salc => Salc(),
            Operation.Clc => SetFlag(CF, false),
            Operation.Stc => SetFlag(CF, true),
            Operation.Cmc => SetFlag(CF, (_ctx.Eflags & CF) == 0),
            Operation.Cld => SetFlag(DF, false),
            Operation.Std => SetFlag(DF, true),
            Operation.Cli => Cli(),
            Operation.Sti => Sti(),
            Operation.Stac or Operation.Clac => SetAlignmentCheck(OperationByCode[(int)ins.Code] == Operation.Stac),
            Operation.Nop => true,
            Operation.InvalidateCaches => RequireRing0(), // SDM Vol. 2A, INVD and WBINVD: #GP(0) if CPL is not 0
            Operation.Cpuid => Cpuid(),
            Operation.Rdtsc => Rdtsc(),
            Operation.Hlt => RequireRing0() && Hlt(),
            Operation.In => In(ref ins),
            Operation.Out => Out(ref ins),
            Operation.Xlat => Xlat(ref ins),
            Operation.Lgdt or Operation.Lidt => RequireRing0() && LoadDescriptorTable(ref ins, OperationByCode[(int)ins.Code]),
            Operation.Sgdt or Operation.Sidt => StoreDescriptorTable(ref ins, OperationByCode[(int)ins.Code]),
            Operation.SoftwareInterrupt => SoftwareInterrupt(ref ins),
            Operation.Iret => Iret(ref ins),
            Operation.Sysenter => Sysenter(),
            Operation.Sysexit => Sysexit(),
            Operation.Rdtscp => Rdtscp(),
            Operation.Rdmsr => RequireRing0() && Rdmsr(),
            Operation.Wrmsr => RequireRing0() && Wrmsr(),
            Operation.X87 => X87(ref ins),
            Operation.Vmcall => _ctx.Cpl == 0 ? Vmcall() : UndefinedOpcode(), // TLFS: a hypercall above CPL 0 is #UD
            _ => UndefinedOpcode(),
        };
        return ok && !_faulted;
    }

    private bool SetFlag(uint flag, bool value)
    {
        _ctx.Eflags = value ? _ctx.Eflags | flag : _ctx.Eflags & ~flag;
        return true;
    }

    /// <summary>
    /// STAC and CLAC (SDM Vol. 2B): set or clear EFLAGS.AC, which lifts or restores SMAP's rule for supervisor data
    /// accesses. Ring 0 only (#UD above it); CPUID leaf 7 reports SMAP, so they exist.
    /// </summary>
    private bool SetAlignmentCheck(bool value)
    {
        if (_ctx.Cpl != 0) return UndefinedOpcode();
        SetFlag(AcFlag, value);
        FlagsChanged();
        return true;
    }
}
