using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The debug registers (SDM Vol. 3B, 17.2): DR0-DR3 hold breakpoint addresses, DR6 the status of the last debug
/// exception, DR7 the breakpoint controls. MOV to and from them is privileged (#GP(0) above CPL 0); DR4 and DR5
/// alias DR6 and DR7, as with CR4.DE clear (this core does not implement DE); DR7.GD makes the next MOV DR a #DB
/// fault with DR6.BD set. DR6's and DR7's reserved bits read as the SDM fixes them. Breakpoints in DR0-DR3 are
/// held but not matched against execution or data accesses yet; single-step (EFLAGS.TF) traps set DR6.BS.
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

    internal static uint DebugStatusOf(uint value) => (value & Dr6Writable) | Dr6Reset;

    internal static uint DebugControlOf(uint value) => (value & Dr7Writable) | Dr7Reset;

    private void ResetDebugRegisters()
    {
        _ctx.Dr0 = _ctx.Dr1 = _ctx.Dr2 = _ctx.Dr3 = 0;
        _ctx.Dr6 = Dr6Reset;
        _ctx.Dr7 = Dr7Reset;
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
        return true;
    }
}
