using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Saving and restoring the x87 state: FNSTENV/FLDENV (the 28-byte environment), FNSAVE/FRSTOR (108 bytes) in their
/// 32-bit protected-mode layout (SDM Vol. 1, 8.1.10, figures 8-9 and 8-10), and FXSAVE/FXRSTOR (the 512-byte area,
/// SDM Vol. 2A, FXSAVE, table 3-53). No SSE state exists: FXSAVE stores MXCSR as its reset value and leaves the XMM area
/// untouched.
/// </summary>
public sealed partial class X86Core
{
    private const uint MxcsrReset = 0x1F80;

    /// <summary>FNSTENV's 28 bytes. The reserved upper halves of the word fields read as 1s on Intel processors.</summary>
    private bool StoreEnvironment(uint ea)
    {
        ref FpuState f = ref _ctx.Fpu;
        WriteMem(ea, 4, 0xFFFF0000u | f.Control);
        WriteMem(ea + 4, 4, 0xFFFF0000u | f.Status);
        WriteMem(ea + 8, 4, 0xFFFF0000u | f.TagWord);
        WriteMem(ea + 12, 4, f.LastIp);
        WriteMem(ea + 16, 4, f.LastCs | ((uint)(f.LastOpcode & 0x7FF) << 16));
        WriteMem(ea + 20, 4, f.LastDp);
        WriteMem(ea + 24, 4, 0xFFFF0000u | f.LastDs);
        return !_faulted;
    }

    /// <summary>FNSAVE's register area: ST(0)..ST(7), 10 bytes each, after the environment.</summary>
    private bool StoreRegisterStack(uint ea)
    {
        for (int i = 0; i < 8; i++)
        {
            WriteMem80(ea + (uint)(10 * i), _ctx.Fpu.St(i));
        }
        return !_faulted;
    }

    /// <summary>FLDENV, or FRSTOR with <paramref name="withRegisters"/>: everything is read before anything changes.</summary>
    private bool LoadEnvironment(uint ea, bool withRegisters)
    {
        uint control = ReadMem(ea, 2), status = ReadMem(ea + 4, 2), tag = ReadMem(ea + 8, 2);
        uint ip = ReadMem(ea + 12, 4), csop = ReadMem(ea + 16, 4), dp = ReadMem(ea + 20, 4), ds = ReadMem(ea + 24, 2);
        Span<Float80> regs = stackalloc Float80[8];
        if (withRegisters)
        {
            for (int i = 0; i < 8; i++) regs[i] = ReadMem80(ea + 28 + (uint)(10 * i));
        }
        if (_faulted) return false;
        ref FpuState f = ref _ctx.Fpu;
        f.Control = (ushort)(control | 0x40);
        f.Status = (ushort)status;
        f.SetTagWord((ushort)tag);
        f.LastIp = ip;
        f.LastCs = (ushort)csop;
        f.LastOpcode = (ushort)((csop >> 16) & 0x7FF);
        f.LastDp = dp;
        f.LastDs = (ushort)ds;
        if (withRegisters)
        {
            for (int i = 0; i < 8; i++) f.St(i) = regs[i];
        }
        UpdateErrorSummary();
        return true;
    }

    /// <summary>The 16-byte alignment FXSAVE and FXRSTOR require (#GP(0) otherwise).</summary>
    private bool FxAreaAligned(ref Instruction ins, out uint ea)
    {
        ea = Ea(ref ins);
        if (_faulted) return false;
        return (ea & 15) == 0 || Fault(ExceptionVector.GeneralProtection, 0);
    }

    private bool Fxsave(ref Instruction ins)
    {
        if (!FxAreaAligned(ref ins, out uint ea)) return false;
        ref FpuState f = ref _ctx.Fpu;
        WriteMem(ea, 4, f.Control | ((uint)f.Status << 16));
        WriteMem(ea + 4, 4, f.Valid | ((uint)(f.LastOpcode & 0x7FF) << 16)); // abridged tag (1 = in use, by physical register), FOP
        WriteMem(ea + 8, 4, f.LastIp);
        WriteMem(ea + 12, 4, f.LastCs);
        WriteMem(ea + 16, 4, f.LastDp);
        WriteMem(ea + 20, 4, f.LastDs);
        WriteMem(ea + 24, 4, MxcsrReset);
        WriteMem(ea + 28, 4, 0x0000FFFF);
        for (int i = 0; i < 8; i++)
        {
            uint slot = ea + 32 + (uint)(16 * i);
            WriteMem80(slot, f.St(i));
            WriteMem(slot + 10, 2, 0);
            WriteMem(slot + 12, 4, 0);
        }
        return !_faulted;
    }

    private bool Fxrstor(ref Instruction ins)
    {
        if (!FxAreaAligned(ref ins, out uint ea)) return false;
        uint cwsw = ReadMem(ea, 4), tagop = ReadMem(ea + 4, 4), ip = ReadMem(ea + 8, 4), cs = ReadMem(ea + 12, 2);
        uint dp = ReadMem(ea + 16, 4), ds = ReadMem(ea + 20, 2), mxcsr = ReadMem(ea + 24, 4);
        Span<Float80> regs = stackalloc Float80[8];
        for (int i = 0; i < 8; i++) regs[i] = ReadMem80(ea + 32 + (uint)(16 * i));
        if (_faulted) return false;
        if ((mxcsr & 0xFFFF0000) != 0) return Fault(ExceptionVector.GeneralProtection, 0); // reserved MXCSR bits (SDM Vol. 2A, FXRSTOR)
        ref FpuState f = ref _ctx.Fpu;
        f.Control = (ushort)(cwsw | 0x40);
        f.Status = (ushort)(cwsw >> 16);
        f.Valid = (byte)tagop;
        f.LastOpcode = (ushort)((tagop >> 16) & 0x7FF);
        f.LastIp = ip;
        f.LastCs = (ushort)cs;
        f.LastDp = dp;
        f.LastDs = (ushort)ds;
        for (int i = 0; i < 8; i++) f.St(i) = regs[i];
        UpdateErrorSummary();
        return true;
    }
}
