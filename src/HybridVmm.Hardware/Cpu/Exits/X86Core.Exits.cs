using System.Runtime.CompilerServices;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Every way an instruction stops and hands control to the hypervisor, and how the hypervisor completes it.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Pending instructions (IN/INS, OUT/OUTS, CPUID, RDMSR, WRMSR, VMCALL): <see cref="Exit"/> leaves EIP on
/// the instruction and records a <see cref="PendingInstruction"/> with the rest of its effect; the matching
/// Complete* call performs it and retires the instruction (or one REP iteration, after which it re-executes).
/// <see cref="InjectException"/> replaces the completion with an exception.</item>
/// <item>Memory intercepts: a guest access the second-level table refuses records a
/// <see cref="CpuExitReason.MemoryIntercept"/> and sets <see cref="_faulted"/>; later accesses of the same
/// instruction then do nothing and the run loop rolls the instruction back (or keeps completed REP iterations).</item>
/// <item>Exceptions: <see cref="Fault"/> records an exception exit; the run loop delivers it through the IDT
/// or returns it.</item>
/// </list>
/// </remarks>
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
    private CpuExit _exit;
    private bool _faulted;
    // Set by REP string instructions: their completed iterations stay architecturally visible on a fault.
    private bool _keepProgress;

    // ---- Stopping ----

    /// <summary>Stops the current instruction with an exit the hypervisor completes later; EIP stays on it.</summary>
    private bool Exit(PendingKind kind, int size, bool rep, uint delta, in CpuExit exit)
    {
        _pending = new PendingInstruction { Kind = kind, Size = (byte)size, Rep = rep, NextEip = _ctx.Eip, Delta = delta };
        _ctx.Eip = _savedEip;
        _exit = exit;
        return false;
    }

    /// <summary>Records a refused data access as the instruction's exit (only the first one counts).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long RecordIntercept(uint address, bool write, int size)
    {
        if (!_faulted)
        {
            _faulted = true;
            _exit = new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: address, IsWrite: write, Size: (byte)size);
        }
        return -1;
    }

    /// <summary>An instruction fetch the second-level table refused: an intercept with nothing to complete.</summary>
    private CpuExit IntercepFetch(uint eip)
    {
        _exit = new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: eip, IsWrite: false, Size: 1);
        return _exit;
    }

    /// <summary>Stops the current instruction with an architectural exception; EIP stays on it (a fault).</summary>
    private bool Fault(byte vector, uint errorCode = 0)
    {
        // A memory intercept recorded earlier in the same instruction takes priority.
        if (!_faulted)
        {
            _exit = new CpuExit(CpuExitReason.Exception, Vector: vector, ErrorCode: errorCode);
        }
        return false;
    }

    private bool UndefinedOpcode() => Fault(ExceptionVector.InvalidOpcode);

    // ---- Completing ----

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

    /// <summary>Completes a pending RDMSR: EDX:EAX = <paramref name="value"/>.</summary>
    public void CompleteRdmsr(ulong value)
    {
        if (_pending.Kind != PendingKind.Rdmsr) return;
        _ctx.Eax = (uint)value;
        _ctx.Edx = (uint)(value >> 32);
        Retire();
    }

    /// <summary>Completes a pending WRMSR (the hypervisor has consumed EDX:EAX).</summary>
    public void CompleteWrmsr()
    {
        if (_pending.Kind == PendingKind.Wrmsr) Retire();
    }

    /// <summary>Completes a pending VMCALL: the hypervisor has already written the result registers.</summary>
    public void CompleteHypercall()
    {
        if (_pending.Kind == PendingKind.Vmcall) Retire();
    }

    /// <summary>
    /// Makes the pending RDMSR/WRMSR/VMCALL (or whatever exited last) raise an exception instead of completing,
    /// e.g. #GP for an MSR the hypervisor does not implement (SDM Vol. 2B, RDMSR). EIP stays on the instruction.
    /// </summary>
    public void InjectException(byte vector, uint errorCode = 0)
    {
        _pending = default;
        _queuedException = true;
        _queuedVector = vector;
        _queuedErrorCode = errorCode;
        _eventCheck = true;
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
