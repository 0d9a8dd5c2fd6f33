using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Port I/O instructions: IN/INS and OUT/OUTS. Each exits with EIP still on the instruction and a pending
/// effect that <see cref="CompleteIoIn"/> or <see cref="CompleteIoOut"/> performs (Exits/X86Core.Exits.cs).
/// </summary>
public sealed partial class X86Core
{
    private static int AccumulatorSize(Register r) => RegSize[(int)r];

    private bool In(ref Instruction ins)
    {
        int size = AccumulatorSize(ins.Op0Register);
        ushort port = ins.Op1Kind == OpKind.Immediate8 ? ins.Immediate8 : (ushort)_ctx.Edx;
        if (!IoAllowed(port, size)) return false;
        return Exit(PendingKind.In, size, false, 0, new CpuExit(CpuExitReason.IoIn, Port: port, Size: (byte)size));
    }

    private bool Out(ref Instruction ins)
    {
        int size = AccumulatorSize(ins.Op1Register);
        ushort port = ins.Op0Kind == OpKind.Immediate8 ? ins.Immediate8 : (ushort)_ctx.Edx;
        if (!IoAllowed(port, size)) return false;
        uint value = _ctx.Eax & SizeMask(size);
        return Exit(PendingKind.Out, size, false, 0, new CpuExit(CpuExitReason.IoOut, Port: port, Size: (byte)size, Value: value));
    }

    private bool Ins(ref Instruction ins)
    {
        int size = MemSize(ref ins);
        bool rep = ins.HasRepPrefix || ins.HasRepnePrefix;
        if (rep && _ctx.Ecx == 0) return true;
        if (!IoAllowed((ushort)_ctx.Edx, size)) return false;
        // Check the destination now, so the port is never read for an element that cannot be stored.
        if (!ProbeWrite(Linear(Sreg.Es, _ctx.Edi, size), size)) return false;
        uint delta = (_ctx.Eflags & DF) != 0 ? (uint)-size : (uint)size;
        return Exit(PendingKind.Ins, size, rep, delta, new CpuExit(CpuExitReason.IoIn, Port: (ushort)_ctx.Edx, Size: (byte)size));
    }

    private bool Outs(ref Instruction ins)
    {
        int size = MemSize(ref ins);
        bool rep = ins.HasRepPrefix || ins.HasRepnePrefix;
        if (rep && _ctx.Ecx == 0) return true;
        if (!IoAllowed((ushort)_ctx.Edx, size)) return false;
        uint value = ReadMem(Linear(ToSreg(ins.MemorySegment), _ctx.Esi, size), size);
        if (_faulted) return false;
        uint delta = (_ctx.Eflags & DF) != 0 ? (uint)-size : (uint)size;
        return Exit(PendingKind.Outs, size, rep, delta, new CpuExit(CpuExitReason.IoOut, Port: (ushort)_ctx.Edx, Size: (byte)size, Value: value));
    }
}
