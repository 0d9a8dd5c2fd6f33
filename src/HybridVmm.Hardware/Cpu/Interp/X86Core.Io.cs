using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Instructions the hypervisor completes: IN/INS, OUT/OUTS and CPUID. Each exits with EIP still on the
/// instruction and a <see cref="PendingInstruction"/> describing the rest of its effect; the Complete*
/// call performs that effect and retires it (or one REP iteration, after which the instruction re-executes).
/// </summary>
public sealed partial class X86Core
{
    private enum PendingKind : byte { None, In, Ins, Out, Outs, Cpuid, Rdmsr, Wrmsr, Vmcall }

    private struct PendingInstruction
    {
        public PendingKind Kind;
        public byte Size;
        public bool Rep;
        public uint NextEip;
        public uint Delta;
    }

    private PendingInstruction _pending;

    private bool Exit(PendingKind kind, int size, bool rep, uint delta, in CpuExit exit)
    {
        _pending = new PendingInstruction { Kind = kind, Size = (byte)size, Rep = rep, NextEip = _ctx.Eip, Delta = delta };
        _ctx.Eip = _savedEip;
        _exit = exit;
        return false;
    }

    private static int AccumulatorSize(Register r) => RegSize[(int)r];

    private bool In(ref Instruction ins)
    {
        int size = AccumulatorSize(ins.Op0Register);
        ushort port = ins.Op1Kind == OpKind.Immediate8 ? ins.Immediate8 : (ushort)_ctx.Edx;
        return Exit(PendingKind.In, size, false, 0, new CpuExit(CpuExitReason.IoIn, Port: port, Size: (byte)size));
    }

    private bool Out(ref Instruction ins)
    {
        int size = AccumulatorSize(ins.Op1Register);
        ushort port = ins.Op0Kind == OpKind.Immediate8 ? ins.Immediate8 : (ushort)_ctx.Edx;
        uint value = _ctx.Eax & SizeMask(size);
        return Exit(PendingKind.Out, size, false, 0, new CpuExit(CpuExitReason.IoOut, Port: port, Size: (byte)size, Value: value));
    }

    private bool Ins(ref Instruction ins)
    {
        int size = MemSize(ref ins);
        bool rep = ins.HasRepPrefix || ins.HasRepnePrefix;
        if (rep && _ctx.Ecx == 0) return true;
        // Check the destination now, so the port is never read for an element that cannot be stored.
        if (!ProbeWrite(_ctx.Edi, size)) return false;
        uint delta = (_ctx.Eflags & DF) != 0 ? (uint)-size : (uint)size;
        return Exit(PendingKind.Ins, size, rep, delta, new CpuExit(CpuExitReason.IoIn, Port: (ushort)_ctx.Edx, Size: (byte)size));
    }

    private bool Outs(ref Instruction ins)
    {
        int size = MemSize(ref ins);
        bool rep = ins.HasRepPrefix || ins.HasRepnePrefix;
        if (rep && _ctx.Ecx == 0) return true;
        uint value = ReadMem(_ctx.Esi, size);
        if (_faulted) return false;
        uint delta = (_ctx.Eflags & DF) != 0 ? (uint)-size : (uint)size;
        return Exit(PendingKind.Outs, size, rep, delta, new CpuExit(CpuExitReason.IoOut, Port: (ushort)_ctx.Edx, Size: (byte)size, Value: value));
    }

    private bool Cpuid() =>
        Exit(PendingKind.Cpuid, 0, false, 0, new CpuExit(CpuExitReason.Cpuid));

    /// <summary>Completes a pending IN/INS with the value read from the port, retiring the instruction (or one REP iteration).</summary>
    /// <remarks>If the second-level table changed since the exit and the INS destination is now refused, the element is dropped.</remarks>
    public void CompleteIoIn(uint value)
    {
        switch (_pending.Kind)
        {
            case PendingKind.In:
                WriteAccumulator(_pending.Size, value);
                Retire();
                break;
            case PendingKind.Ins:
                WriteMem(_ctx.Edi, _pending.Size, value);
                _faulted = false;
                _ctx.Edi += _pending.Delta;
                FinishRepIteration();
                break;
            default:
                throw new InvalidOperationException("CompleteIoIn called without a pending IN/INS.");
        }
    }

    /// <summary>Completes a pending OUT/OUTS, retiring the instruction (or one REP iteration).</summary>
    public void CompleteIoOut()
    {
        switch (_pending.Kind)
        {
            case PendingKind.Out:
                Retire();
                break;
            case PendingKind.Outs:
                _ctx.Esi += _pending.Delta;
                FinishRepIteration();
                break;
            default:
                throw new InvalidOperationException("CompleteIoOut called without a pending OUT/OUTS.");
        }
    }

    /// <summary>Completes a pending CPUID with the values the hypervisor chose.</summary>
    public void CompleteCpuid(uint eax, uint ebx, uint ecx, uint edx)
    {
        if (_pending.Kind != PendingKind.Cpuid)
        {
            throw new InvalidOperationException("CompleteCpuid called without a pending CPUID.");
        }
        _ctx.Eax = eax;
        _ctx.Ebx = ebx;
        _ctx.Ecx = ecx;
        _ctx.Edx = edx;
        Retire();
    }

    private void FinishRepIteration()
    {
        if (_pending.Rep && --_ctx.Ecx != 0)
        {
            // More elements: EIP stays on the instruction, which exits again for the next one.
            _pending = default;
            return;
        }
        Retire();
    }

    private void Retire()
    {
        _ctx.Eip = _pending.NextEip;
        _pending = default;
        InstructionsRetired++;
    }
}
