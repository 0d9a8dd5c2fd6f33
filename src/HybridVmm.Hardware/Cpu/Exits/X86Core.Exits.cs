
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
/// instruction then do nothing and the run loop rolls the instruction back (or keeps completed REP iterations).
/// For a device access (MMIO) the hypervisor calls <see cref="CompleteMemoryIntercept"/>, and the re-executed
/// instruction replays the completed accesses instead of exiting again.</item>
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

        /// <summary>INS/OUTS with a 16-bit address size: DI/SI and CX step within their low 16 bits.</summary>
        public bool Address16;
    }

    private PendingInstruction _pending;
    private CpuExit _exit;
    private bool _faulted;
    // Set by REP string instructions: their completed iterations stay architecturally visible on a fault.
    private bool _keepProgress;

    // ---- Stopping ----

    /// <summary>Stops the current instruction with an exit the hypervisor completes later; EIP stays on it.</summary>
    private bool Exit(PendingKind kind, int size, bool rep, uint delta, in CpuExit exit, bool address16 = false)
    {
        _pending = new PendingInstruction { Kind = kind, Size = (byte)size, Rep = rep, NextEip = _ctx.Eip, Delta = delta, Address16 = address16 };
        _ctx.Eip = _savedEip;
        _exit = exit;
        return false;
    }

    /// <summary>
    /// A data access the second-level table refused: replayed if the hypervisor already answered it
    /// (<see cref="CompleteMemoryIntercept"/>), otherwise recorded as the instruction's exit (only the first counts).
    /// </summary>
    private long MemoryIntercept(ulong address, bool write, int size, uint writeValue)
    {
        if (_faulted)
        {
            return -1;
        }
        if (_replayCount != 0 && Replay(address, write, size))
        {
            return -1;
        }
        _faulted = true;
        _mmioValue = 0;
        _interceptCompletable = true;
        _exit = new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: address, IsWrite: write, Size: (byte)size,
            Value: write ? writeValue & SizeMask(size) : 0);
        return -1;
    }

    /// <summary>A refused write probe (<see cref="ProbeWrite"/>): an intercept without data, which cannot be completed.</summary>
    private bool ProbeRefused(ulong address, int size)
    {
        if (!_faulted)
        {
            _faulted = true;
            _interceptCompletable = false;
            _exit = new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: address, IsWrite: true, Size: (byte)size);
        }
        return false;
    }

    /// <summary>An instruction fetch the second-level table refused: an intercept with nothing to complete.</summary>
    private CpuExit IntercepFetch(ulong eip)
    {
        _interceptCompletable = false;
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
                WriteMem(Linear(Sreg.Es, _pending.Address16 ? _ctx.Edi & 0xFFFF : _ctx.Edi, _pending.Size), _pending.Size, value);
                _faulted = false;
                _ctx.Edi = StepPendingIndex(_ctx.Edi);
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
                _ctx.Esi = StepPendingIndex(_ctx.Esi);
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
        DiscardReplay();
        QueueException(vector, errorCode);
    }

    /// <summary>An exception delivered at the next instruction boundary, before anything else (ServiceEvents).</summary>
    private void QueueException(byte vector, uint errorCode)
    {
        _queuedException = true;
        _queuedVector = vector;
        _queuedErrorCode = errorCode;
        _eventCheck = true;
    }

    // ---- Memory intercepts that complete (MMIO) ----

    /// <summary>One access of the current instruction that the hypervisor already performed.</summary>
    private struct SatisfiedAccess
    {
        public ulong Address;
        public uint Value;
        public byte Size;
        public bool IsWrite;
    }

    // The replay list: the accesses of the instruction at _replayEip (retired count _replayRetired) that a device
    // answered, in program order. Each execution attempt consumes them from _replayCursor = 0.
    private SatisfiedAccess[] _replay = new SatisfiedAccess[8];
    private int _replayCount;
    private int _replayCursor;
    private long _replayRetired;
    private uint _replayEip;
    // The value a replayed read returns (Read8/16/32, ReadSplit).
    private uint _mmioValue;
    // The last exit is a data-access intercept that CompleteMemoryIntercept may complete.
    private bool _interceptCompletable;

    /// <summary>
    /// True when the last exit is a <see cref="CpuExitReason.MemoryIntercept"/> for a data access that
    /// <see cref="CompleteMemoryIntercept"/> can complete. False for an instruction fetch (code cannot run from
    /// MMIO) and for the write probe of INS, PUSHA, SGDT/SIDT and CMPXCHG8B (checked before their first write,
    /// it carries no data): such an exit can only be resolved by changing the table, or by faulting the guest.
    /// </summary>
    public bool CanCompleteMemoryIntercept => _interceptCompletable && _exit.Reason == CpuExitReason.MemoryIntercept;

    /// <summary>
    /// Completes the access described by the last <see cref="CpuExitReason.MemoryIntercept"/> exit as a device
    /// access (MMIO), the way <see cref="CompleteIoIn"/> completes IN.
    /// </summary>
    /// <param name="readValue">For a read, the value the device returned (its low <see cref="CpuExit.Size"/> bytes
    /// are used). Ignored for a write: the written bytes were in <see cref="CpuExit.Value"/> of the exit.</param>
    /// <remarks>
    /// <para>Contract for the hypervisor. Call it only when a device claims <see cref="CpuExit.GuestPhysicalAddress"/>
    /// and has performed exactly the access the exit describes (address, size, read or write, and for a write the
    /// low <see cref="CpuExit.Size"/> bytes of <see cref="CpuExit.Value"/>); then run the core again. Do not call it
    /// for write protection (copy-on-write, dirty logging): there, change the table and run again without a
    /// completion, as before; nothing is replayed then.</para>
    /// <para>The instruction was rolled back at the exit (completed REP iterations stay). When it re-executes, each
    /// access that matches the next completed one, in order, takes the recorded value (a read) or counts as done (a
    /// write) instead of exiting; the next access the table refuses exits again. An instruction with several
    /// device accesses (a read-modify-write such as <c>add [mmio], eax</c> or XCHG: a read then a write; MOVS from
    /// MMIO to MMIO; an access that crosses a page: one access per page part, low part first) therefore exits once
    /// per access and each device access happens exactly once. A REP string instruction exits once per access of
    /// each element, and drops the completed accesses when an element finishes.</para>
    /// <para>No interrupt is taken between the completion and the re-execution. The completed accesses are
    /// dropped when the instruction retires, when an exception is delivered or injected
    /// (<see cref="InjectException"/>), and on reset or <see cref="RestoreState"/>; they are not saved state: after a
    /// restore the instruction exits again, as IN does.</para>
    /// </remarks>
    /// <exception cref="InvalidOperationException">The last exit cannot be completed
    /// (<see cref="CanCompleteMemoryIntercept"/> is false), or was already completed.</exception>
    public void CompleteMemoryIntercept(uint readValue = 0)
    {
        if (!CanCompleteMemoryIntercept)
        {
            throw new InvalidOperationException(_exit.Reason == CpuExitReason.MemoryIntercept
                ? "CompleteMemoryIntercept: this intercept (an instruction fetch or a write probe) cannot be completed, or was completed already."
                : "CompleteMemoryIntercept called without a pending memory intercept.");
        }
        _interceptCompletable = false;
        if (_replayCount == 0 || _replayRetired != InstructionsRetired || _replayEip != _ctx.Eip)
        {
            _replayCount = 0;
            _replayRetired = InstructionsRetired;
            _replayEip = _ctx.Eip;
        }
        if (_replayCount == _replay.Length)
        {
            Array.Resize(ref _replay, _replay.Length * 2);
        }
        int size = _exit.Size;
        _replay[_replayCount++] = new SatisfiedAccess
        {
            Address = _exit.GuestPhysicalAddress,
            Size = (byte)size,
            IsWrite = _exit.IsWrite,
            Value = (_exit.IsWrite ? _exit.Value : readValue) & SizeMask(size),
        };
        _replayCursor = 0;
    }

    /// <summary>Consumes the next completed access if it is this one; false when the access must exit.</summary>
    private bool Replay(ulong address, bool write, int size)
    {
        if (_replayRetired != InstructionsRetired || _replayEip != _savedEip)
        {
            DiscardReplay(); // left over from an instruction that has retired
            return false;
        }
        if (_replayCursor < _replayCount)
        {
            ref SatisfiedAccess next = ref _replay[_replayCursor];
            if (next.Address == address && next.Size == size && next.IsWrite == write)
            {
                _replayCursor++;
                _mmioValue = next.Value;
                return true;
            }
            // The instruction took another path than when it exited (the table or memory changed):
            // the remaining records no longer describe its accesses.
            _replayCount = _replayCursor;
        }
        return false;
    }

    /// <summary>True while the instruction at <paramref name="eip"/> has completed accesses waiting to be replayed.</summary>
    private bool ReplayPendingAt(uint eip)
    {
        if (_replayRetired == InstructionsRetired && _replayEip == eip)
        {
            return true;
        }
        DiscardReplay();
        return false;
    }

    private void DiscardReplay()
    {
        _replayCount = 0;
        _replayCursor = 0;
    }

    private void FinishRepIteration()
    {
        if (_replayCount != 0) DiscardReplay(); // e.g. OUTS from MMIO: the element is done
        if (_pending.Rep && (_pending.Address16 ? (_ctx.Ecx = (_ctx.Ecx & 0xFFFF0000) | ((_ctx.Ecx - 1) & 0xFFFF)) & 0xFFFF : --_ctx.Ecx) != 0)
        {
            // More elements: EIP stays on the instruction, which exits again for the next one.
            _pending = default;
            return;
        }
        Retire();
    }

    /// <summary>INS/OUTS's index register after one element: only its low 16 bits move with a 16-bit address size.</summary>
    private uint StepPendingIndex(uint register) =>
        _pending.Address16 ? (register & 0xFFFF0000) | ((register + _pending.Delta) & 0xFFFF) : register + _pending.Delta;

    private void Retire()
    {
        if (_replayCount != 0) DiscardReplay();
        _ctx.Eip = _pending.NextEip;
        _pending = default;
        InstructionsRetired++;
    }
}
