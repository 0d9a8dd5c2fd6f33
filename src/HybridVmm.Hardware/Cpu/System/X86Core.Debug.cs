using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The debug registers (SDM Vol. 3B, 17.2): DR0-DR3 hold breakpoint addresses, DR6 the status of the last debug
/// exception, DR7 the breakpoint controls. MOV to and from them is privileged (#GP(0) above CPL 0); DR4 and DR5
/// alias DR6 and DR7, as with CR4.DE clear (this core does not implement DE); DR7.GD makes the next MOV DR a #DB
/// fault with DR6.BD set. DR6's and DR7's reserved bits read as the SDM fixes them. An instruction breakpoint (DR7's
/// L or G bit with R/W 00) is a #DB fault before the instruction at that linear address runs, with DR6.Bn set
/// (17.3.1.1); EFLAGS.RF suppresses it for one instruction, as an IRET back to the breakpoint needs. Data and I/O
/// breakpoints are held but not matched yet; single-step (EFLAGS.TF) traps set DR6.BS.
/// </summary>
public sealed partial class X86Core
{
    /// <summary>DR6 at reset: reserved bits 4-11 and 16-31 read as 1, bit 12 as 0 (SDM Vol. 3B, 17.2.3 and Table 9-1).</summary>
    public const uint Dr6Reset = 0xFFFF0FF0;

    /// <summary>DR7 at reset: reserved bit 10 reads as 1.</summary>
    public const uint Dr7Reset = 0x00000400;

    private const uint Dr6Writable = 0x0000E00F;   // B0-B3, BD (13), BS (14), BT (15)
    private const uint Dr7Writable = 0xFFFF23FF;   // L0-G3, LE, GE, GD (13), R/W and LEN (16-31)
    private const uint Dr6BreakpointDetected = 1u << 13;
    private const uint Dr6SingleStep = 1u << 14;
    private const uint Dr7GeneralDetect = 1u << 13;

    // Bit n set: DRn is an enabled instruction breakpoint (L or G set, R/W 00). Kept in step with DR0-DR3 and DR7.
    private byte _instructionBreakpoints;

    internal static uint DebugStatusOf(uint value) => (value & Dr6Writable) | Dr6Reset;

    /// <summary>Recomputes which of DR0-DR3 are armed instruction breakpoints; the run loop checks them at each boundary.</summary>
    private void DebugControlChanged()
    {
        byte armed = 0;
        for (int n = 0; n < 4; n++)
        {
            bool enabled = ((_ctx.Dr7 >> (2 * n)) & 3) != 0;
            bool execute = ((_ctx.Dr7 >> (16 + 4 * n)) & 3) == 0;
            if (enabled && execute) armed |= (byte)(1 << n);
        }
        _instructionBreakpoints = armed;
        RecomputeEventCheck();
    }

    /// <summary>
    /// At an instruction boundary with instruction breakpoints armed: a #DB fault when EIP's linear address is one of
    /// them (DR6.B0-B3 name every match, BS/BD/BT as they were), unless RF says the instruction was just returned to;
    /// RF is then cleared, the instruction being the one it covered. False when the core shut down.
    /// </summary>
    private bool CheckInstructionBreakpoints(out bool delivered)
    {
        delivered = false;
        uint linear = _ctx.Eip + _csBase;
        bool again = _breakpointCheckedAt == (InstructionsRetired, linear);
        _breakpointCheckedAt = (InstructionsRetired, linear);
        if ((_ctx.Eflags & RfFlag) != 0)
        {
            // RF covers this one instruction (SDM Vol. 3B, 17.3.1.1); cleared here, before it, rather than after it.
            _ctx.Eflags &= ~RfFlag;
            RecomputeEventCheck();
            return true;
        }
        if (again)
        {
            return true; // the same instruction again after an exit (an MMIO replay, a dirty-page retry): checked already
        }
        uint hits = 0;
        for (int n = 0; n < 4; n++)
        {
            if ((_instructionBreakpoints & (1 << n)) != 0 && DebugAddress(n) == linear) hits |= 1u << n;
        }
        if (hits == 0) return true;
        _ctx.Dr6 = (_ctx.Dr6 & ~0xFu) | hits;
        delivered = true;
        return DeliverException(ExceptionVector.Debug, 0);
    }

    // Where the last breakpoint check was made (instructions retired, linear EIP), so a re-executed instruction is not checked twice.
    private (long, uint) _breakpointCheckedAt = (-1, 0);

    private uint DebugAddress(int n) => n switch { 0 => _ctx.Dr0, 1 => _ctx.Dr1, 2 => _ctx.Dr2, _ => _ctx.Dr3 };

    internal static uint DebugControlOf(uint value) => (value & Dr7Writable) | Dr7Reset;

    private void ResetDebugRegisters()
    {
        _ctx.Dr0 = _ctx.Dr1 = _ctx.Dr2 = _ctx.Dr3 = 0;
        _ctx.Dr6 = Dr6Reset;
        _ctx.Dr7 = Dr7Reset;
        _instructionBreakpoints = 0;
    }

    /// <summary>MOV r32, DRn and MOV DRn, r32 (SDM Vol. 2B, "MOV—Move to/from Debug Registers").</summary>
    private bool MovDr(ref Instruction ins)
    {
        if (_ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection);
        if ((_ctx.Dr7 & Dr7GeneralDetect) != 0)
        {
            // General detect: a #DB fault before the access; the processor clears GD so that the handler can use them.
            _ctx.Dr7 &= ~Dr7GeneralDetect;
            _ctx.Dr6 = (_ctx.Dr6 & ~0xFu) | Dr6BreakpointDetected;
            return Fault(ExceptionVector.Debug);
        }

        bool toDr = ins.Code == Code.Mov_dr_r32;
        Register dr = toDr ? ins.Op0Register : ins.Op1Register;
        if (!toDr)
        {
            WriteReg(ins.Op0Register, dr switch
            {
                Register.DR0 => _ctx.Dr0,
                Register.DR1 => _ctx.Dr1,
                Register.DR2 => _ctx.Dr2,
                Register.DR3 => _ctx.Dr3,
                Register.DR4 or Register.DR6 => _ctx.Dr6,
                _ => _ctx.Dr7,
            });
            return true;
        }

        uint value = ReadReg(ins.Op1Register);
        switch (dr)
        {
            case Register.DR0: _ctx.Dr0 = value; break;
            case Register.DR1: _ctx.Dr1 = value; break;
            case Register.DR2: _ctx.Dr2 = value; break;
            case Register.DR3: _ctx.Dr3 = value; break;
            case Register.DR4 or Register.DR6: _ctx.Dr6 = DebugStatusOf(value); break;
            default: _ctx.Dr7 = DebugControlOf(value); break;
        }
        DebugControlChanged();
        return true;
    }
}
