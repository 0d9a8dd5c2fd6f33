using System.Runtime.CompilerServices;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The x87 FPU (Intel SDM Vol. 1, chapter 8; Vol. 2 for each instruction): dispatch of the D8-DF escape opcodes,
/// WAIT and FXSAVE/FXRSTOR, the CR0.EM/TS/MP checks (#NM, #UD), pending unmasked exceptions (#MF with CR0.NE=1), the
/// register stack with its overflow and underflow faults, and the status-word bookkeeping. The arithmetic itself is
/// <see cref="SoftFloat"/>; the families are in the other Fpu/ files.
/// </summary>
/// <remarks>
/// Integer code pays nothing for any of it: every x87 form maps to the one <see cref="Operation.X87"/> entry of the
/// dispatch table, and only then does this file switch on the mnemonic. A handler reads its memory operands first and
/// writes its memory result before it changes any FPU state, so a faulting access leaves the FPU as it was (the
/// run loop's rollback covers only the GPRs, EIP and EFLAGS).
/// </remarks>
public sealed partial class X86Core
{
    private const ushort FswIe = 0x01, FswSf = 0x40, FswEs = 0x80, FswC0 = 0x100, FswC1 = 0x200, FswC2 = 0x400, FswC3 = 0x4000, FswB = 0x8000;
    private const ushort FswConditions = FswC0 | FswC1 | FswC2 | FswC3;
    private const uint Cr0Mp = (uint)Cr0Flags.MP, Cr0Em = (uint)Cr0Flags.EM, Cr0Ts = (uint)Cr0Flags.TS, Cr0Ne = (uint)Cr0Flags.NE;

    /// <summary>The x87 state (registers R0-R7 in physical order, control, status, tag, pointers).</summary>
    public FpuSavedState Fpu
    {
        get => FpuSavedState.From(_ctx.Fpu);
        set => value.ApplyTo(ref _ctx.Fpu);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool X87(ref Instruction ins)
    {
        Mnemonic m = ins.Mnemonic;
        uint cr0 = _ctx.Cr0;
        switch (m)
        {
            case Mnemonic.Wait:
                // WAIT faults with #NM only when MP and TS are both set (SDM Vol. 3A, 2.5, table 2-2).
                if ((cr0 & (Cr0Mp | Cr0Ts)) == (Cr0Mp | Cr0Ts)) return Fault(ExceptionVector.DeviceNotAvailable);
                return CheckPendingFpuException();
            case Mnemonic.Fxsave or Mnemonic.Fxrstor:
                if ((cr0 & Cr0Em) != 0) return UndefinedOpcode(); // SDM Vol. 2A, FXSAVE: EM = 1 is #UD
                if ((cr0 & Cr0Ts) != 0) return Fault(ExceptionVector.DeviceNotAvailable);
                return m == Mnemonic.Fxsave ? Fxsave(ref ins) : Fxrstor(ref ins);
        }

        if ((cr0 & (Cr0Em | Cr0Ts)) != 0) return Fault(ExceptionVector.DeviceNotAvailable);
        bool noWait = m is Mnemonic.Fninit or Mnemonic.Fnclex or Mnemonic.Fnstsw or Mnemonic.Fnstcw or Mnemonic.Fnstenv or Mnemonic.Fnsave
            or Mnemonic.Fnsetpm or Mnemonic.Fneni or Mnemonic.Fndisi;
        if (!noWait && !CheckPendingFpuException()) return false;

        switch (m)
        {
            case Mnemonic.Fninit or Mnemonic.Finit:
                _ctx.Fpu.Initialize();
                return true;
            case Mnemonic.Fnclex or Mnemonic.Fclex:
                _ctx.Fpu.Status &= unchecked((ushort)~(0x3F | FswSf | FswEs | FswB));
                return true;
            case Mnemonic.Fnstsw or Mnemonic.Fstsw:
                return StoreFpuWord(ref ins, _ctx.Fpu.Status);
            case Mnemonic.Fnstcw or Mnemonic.Fstcw:
                return StoreFpuWord(ref ins, _ctx.Fpu.Control);
            case Mnemonic.Fldcw:
            {
                uint cw = ReadMem(Ea(ref ins), 2);
                if (_faulted) return false;
                _ctx.Fpu.Control = (ushort)(cw | 0x40); // bit 6 reads as 1 (SDM Vol. 1, figure 8-6)
                UpdateErrorSummary();
                return true;
            }
            case Mnemonic.Fnstenv or Mnemonic.Fstenv:
                if (!StoreEnvironment(Ea(ref ins))) return false;
                _ctx.Fpu.Control |= 0x3F; // FNSTENV then masks all exceptions (SDM Vol. 2A, FSTENV)
                return true;
            case Mnemonic.Fldenv:
                return LoadEnvironment(Ea(ref ins), withRegisters: false);
            case Mnemonic.Fnsave or Mnemonic.Fsave:
                if (!StoreEnvironment(Ea(ref ins)) || !StoreRegisterStack(Ea(ref ins) + 28)) return false;
                _ctx.Fpu.Initialize();
                return true;
            case Mnemonic.Frstor:
                return LoadEnvironment(Ea(ref ins), withRegisters: true);
            case Mnemonic.Fnop or Mnemonic.Fnsetpm or Mnemonic.Fsetpm or Mnemonic.Fneni or Mnemonic.Feni or Mnemonic.Fndisi or Mnemonic.Fdisi:
                return true; // the 8087/287 mode controls are FNOPs on the 387 and later
            case Mnemonic.Fincstp:
                _ctx.Fpu.Top++;
                _ctx.Fpu.Status &= unchecked((ushort)~FswC1);
                return true;
            case Mnemonic.Fdecstp:
                _ctx.Fpu.Top--;
                _ctx.Fpu.Status &= unchecked((ushort)~FswC1);
                return true;
            case Mnemonic.Ffree or Mnemonic.Ffreep:
                _ctx.Fpu.SetValid(StIndex(ins.Op0Register), false);
                _ctx.Fpu.Status &= unchecked((ushort)~FswC1); // C0-C3 are undefined (SDM); the host processor clears C1
                if (m == Mnemonic.Ffreep) PopFpu();
                return true;
        }

        return X87Data(ref ins, m);
    }

    /// <summary>#MF before a waiting instruction when an unmasked exception is pending (ES) and CR0.NE = 1. With NE = 0 the
    /// PC's external FERR#/IRQ 13 path would signal it; that is not simulated.</summary>
    private bool CheckPendingFpuException()
    {
        if ((_ctx.Fpu.Status & FswEs) != 0 && (_ctx.Cr0 & Cr0Ne) != 0) return Fault(ExceptionVector.MathFault);
        return true;
    }

    private static int StIndex(Register r) => r - Register.ST0;

    private bool StoreFpuWord(ref Instruction ins, ushort value)
    {
        if (ins.Op0Kind == OpKind.Register)
        {
            WriteReg(Register.AX, value);
            return true;
        }
        WriteMem(Ea(ref ins), 2, value);
        return !_faulted;
    }

    /// <summary>ES and B follow the unmasked exception flags (after FLDCW, FLDENV, FRSTOR, FXRSTOR or a new exception).</summary>
    private void UpdateErrorSummary()
    {
        ref FpuState f = ref _ctx.Fpu;
        if ((f.Status & ~f.Control & 0x3F) != 0) f.Status |= FswEs | FswB;
        else f.Status &= unchecked((ushort)~(FswEs | FswB));
    }

    private FpuEnvironment FpuEnv() => FpuEnvironment.FromControlWord(_ctx.Fpu.Control);

    /// <summary>
    /// Records an operation's exception flags and C1 (rounded up). True when the result may be delivered: no unmasked
    /// invalid-operation, denormal or zero-divide exception (those leave the destination and the stack untouched).
    /// </summary>
    private bool CommitFlags(ref FpuEnvironment env, FpuExceptions blocking = FpuExceptions.Invalid | FpuExceptions.Denormal | FpuExceptions.ZeroDivide)
    {
        ref FpuState f = ref _ctx.Fpu;
        f.Status = (ushort)((f.Status & ~FswC1) | (ushort)env.Flags | ((env.Flags & FpuExceptions.Precision) != 0 && env.RoundedUp ? FswC1 : 0));
        if ((env.Flags & ~env.Masks & FpuExceptions.All) != 0) f.Status |= FswEs | FswB;
        return (env.Flags & ~env.Masks & blocking) == 0;
    }

    /// <summary>Stack overflow or underflow (IE with SF; C1 = 1 for overflow). True when IE is masked (the masked response follows).</summary>
    private bool StackFault(bool overflow)
    {
        ref FpuState f = ref _ctx.Fpu;
        f.Status = (ushort)((f.Status & ~FswC1) | FswIe | FswSf | (overflow ? FswC1 : 0));
        if ((f.Control & 1) == 0)
        {
            f.Status |= FswEs | FswB;
            return false;
        }
        return true;
    }

    /// <summary>Pushes a value; a full stack (ST(7) in use) is a stack overflow whose masked response pushes the indefinite.</summary>
    private void PushFpu(Float80 value)
    {
        ref FpuState f = ref _ctx.Fpu;
        if ((f.Valid & (1 << ((f.Top - 1) & 7))) != 0)
        {
            if (!StackFault(overflow: true)) return;
            value = Float80.Indefinite;
        }
        f.Top--;
        f.St(0) = value;
        f.SetValid(0, true);
    }

    private void PopFpu()
    {
        ref FpuState f = ref _ctx.Fpu;
        f.SetValid(0, false);
        f.Top++;
    }

    /// <summary>Writes ST(i) and tags it in use.</summary>
    private void SetSt(int i, Float80 value)
    {
        _ctx.Fpu.St(i) = value;
        _ctx.Fpu.SetValid(i, true);
    }

    /// <summary>The last-instruction pointers and opcode (SDM Vol. 1, 8.1.8-9) of a non-control instruction.</summary>
    private void NoteFpuInstruction(ref Instruction ins)
    {
        ref FpuState f = ref _ctx.Fpu;
        f.LastIp = _savedEip;
        f.LastCs = _ctx.Cs.Selector;
        // FOP: the low three bits of the escape opcode and the ModR/M byte, from the instruction's bytes.
        uint linear = _savedEip + _csBase;
        for (int i = 0; i < ins.Length - 1; i++)
        {
            int b = PeekCodeByte(linear + (uint)i);
            if (b is >= 0xD8 and <= 0xDF)
            {
                int modrm = PeekCodeByte(linear + (uint)i + 1);
                f.LastOpcode = (ushort)(((b & 7) << 8) | (modrm & 0xFF));
                break;
            }
        }
        if (ins.Op0Kind == OpKind.Memory || ins.Op1Kind == OpKind.Memory)
        {
            f.LastDp = EffectiveOffset(ref ins);
            f.LastDs = _ctx.Segments[(int)ToSreg(ins.MemorySegment)].Selector;
        }
    }

    private ulong ReadMem64(uint ea)
    {
        ulong lo = ReadMem(ea, 4);
        ulong hi = ReadMem(ea + 4, 4);
        return lo | (hi << 32);
    }

    private void WriteMem64(uint ea, ulong v)
    {
        // No write probe: it would refuse MMIO for good. A fault on the second half re-executes the whole store.
        WriteMem(ea, 4, (uint)v);
        WriteMem(ea + 4, 4, (uint)(v >> 32));
    }

    private Float80 ReadMem80(uint ea)
    {
        ulong sig = ReadMem64(ea);
        uint se = ReadMem(ea + 8, 2);
        return new Float80(sig, (ushort)se);
    }

    private void WriteMem80(uint ea, Float80 v)
    {
        WriteMem64(ea, v.Significand);
        WriteMem(ea + 8, 2, v.SignExponent);
    }
}
