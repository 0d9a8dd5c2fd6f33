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

    // INS and OUTS with a 16-bit address size (16-bit code, or a 0x67 prefix) walk DI or SI and count with CX, each
    // wrapping at 64 KiB, as the other string instructions do (X86Core.Strings.cs).
    private bool Ins(ref Instruction ins)
    {
        int size = MemSize(ref ins);
        bool rep = ins.HasRepPrefix || ins.HasRepnePrefix;
        bool address16 = ins.Op0Kind == OpKind.MemoryESDI;
        if (rep && (address16 ? _ctx.Ecx & 0xFFFF : _ctx.Ecx) == 0) return true;
        if (!IoAllowed((ushort)_ctx.Edx, size)) return false;
        // Check the destination now, so the port is never read for an element that cannot be stored.
        if (!ProbeWrite(Linear(Sreg.Es, address16 ? _ctx.Edi & 0xFFFF : _ctx.Edi, size), size)) return false;
        uint delta = (_ctx.Eflags & DF) != 0 ? (uint)-size : (uint)size;
        return Exit(PendingKind.Ins, size, rep, delta, new CpuExit(CpuExitReason.IoIn, Port: (ushort)_ctx.Edx, Size: (byte)size), address16);
    }

    private bool Outs(ref Instruction ins)
    {
        int size = MemSize(ref ins);
        bool rep = ins.HasRepPrefix || ins.HasRepnePrefix;
        bool address16 = ins.Op1Kind == OpKind.MemorySegSI;
        if (rep && (address16 ? _ctx.Ecx & 0xFFFF : _ctx.Ecx) == 0) return true;
        if (!IoAllowed((ushort)_ctx.Edx, size)) return false;
        uint value = ReadMem(Linear(ToSreg(ins.MemorySegment), address16 ? _ctx.Esi & 0xFFFF : _ctx.Esi, size), size);
        if (_faulted) return false;
        uint delta = (_ctx.Eflags & DF) != 0 ? (uint)-size : (uint)size;
        return Exit(PendingKind.Outs, size, rep, delta, new CpuExit(CpuExitReason.IoOut, Port: (ushort)_ctx.Edx, Size: (byte)size, Value: value), address16);
    }
}
