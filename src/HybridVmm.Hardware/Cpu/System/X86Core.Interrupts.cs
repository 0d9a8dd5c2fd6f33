using System.Runtime.CompilerServices;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Interrupt and exception delivery in 32-bit protected mode (Intel SDM Vol. 3A, chapter 6): the IDT with
/// 32-bit interrupt and trap gates, error codes, IRET, STI's one-instruction shadow, the double-fault and
/// triple-fault escalation, and the host side of an interrupt line (<see cref="RequestInterrupt"/>): only the
/// hypervisor calls it, a device never does.
/// </summary>
/// <remarks>
/// The hot path pays one predictable branch per instruction (<see cref="_eventCheck"/>), which is set only while
/// an interrupt is pending, an exception is queued or an STI shadow is active. The run loop stays free of
/// allocations: pending vectors are a 256-bit request register held in four fields.
/// A guest that never loaded an IDT (IDTR limit 0) keeps the historic behaviour: its first exception stops it
/// with an <see cref="CpuExitReason.Exception"/> exit naming the exception, which is where real hardware would
/// begin the #GP, #DF, triple-fault chain anyway.
/// </remarks>
public sealed partial class X86Core
{
    private const uint GateInterrupt32 = 0xE;
    private const uint GateTrap32 = 0xF;
    private const uint GateInterrupt16 = 0x6;
    private const uint GateTrap16 = 0x7;

    // Pending external interrupt vectors (an interrupt request register, as in the local APIC's IRR).
    private ulong _irr0, _irr1, _irr2, _irr3;
    private bool _eventCheck;
    private bool _stiShadow;
    private bool _queuedException;
    private byte _queuedVector;
    private uint _queuedErrorCode;
    // An interrupt-window request (VMX's "interrupt-window exiting", Hyper-V's HvRegisterDeliverabilityNotifications)
    // and an external interrupt the hypervisor injected at such a window (VMX's VM-entry interruption information).
    private bool _windowRequested;
    private bool _injectedPending;
    private byte _injectedVector;

    /// <summary>True once LIDT has loaded a non-empty table: exceptions are then delivered through it.</summary>
    public bool IdtLoaded => Idtr.Limit != 0;

    /// <summary>EFLAGS.IF: maskable interrupts are accepted.</summary>
    public bool InterruptsEnabled => (_ctx.Eflags & (uint)EFlags.IF) != 0;

    /// <summary>
    /// An interrupt is pending and IF would let the core take it (a halted core wakes for it); an interrupt window
    /// the hypervisor asked for counts, since it stands for an external controller's pending request.
    /// </summary>
    public bool HasDeliverableInterrupt =>
        (InterruptsEnabled && ((_irr0 | _irr1 | _irr2 | _irr3) != 0 || _windowRequested || _injectedPending || LocalControllerReady))
        || (_nmiPending && !_nmiBlocked);

    /// <summary>Whether the hypervisor asked for an <see cref="CpuExitReason.InterruptWindow"/> exit that has not happened yet.</summary>
    public bool InterruptWindowRequested => _windowRequested;

    /// <summary>
    /// Asks for (or withdraws) an <see cref="CpuExitReason.InterruptWindow"/> exit at the first instruction boundary where
    /// the core can take an external interrupt (IF=1, no STI or MOV SS shadow). This is how an interrupt controller
    /// outside the core (the 8259's INTR, Hyper-V's ExtINT) learns when it may hand over a vector: the vector is chosen
    /// then, at acknowledge time, not when the request was raised. Called by the hypervisor only.
    /// </summary>
    public void RequestInterruptWindow(bool requested)
    {
        _windowRequested = requested;
        RecomputeEventCheck();
    }

    /// <summary>
    /// Injects an external interrupt with <paramref name="vector"/> (0-255, e.g. an 8259's vector 0x08) to be delivered
    /// through the IDT at the next instruction boundary, before any other pending interrupt, as VMX event injection at
    /// VM entry does. Meant for the boundary of an <see cref="CpuExitReason.InterruptWindow"/> exit, where IF=1.
    /// </summary>
    public void InjectExternalInterrupt(byte vector)
    {
        _injectedPending = true;
        _injectedVector = vector;
        _eventCheck = true;
    }

    /// <summary>MOV SS and POP SS hold off interrupts until the next instruction retires (SDM Vol. 3A, 6.8.3).</summary>
    private bool BeginMovSsShadow()
    {
        _stiShadow = true;
        _eventCheck = true;
        return true;
    }

    /// <summary>An interrupt vector is requested but not yet delivered.</summary>
    public bool HasPendingInterrupt => (_irr0 | _irr1 | _irr2 | _irr3) != 0;

    /// <summary>
    /// Raises an external interrupt with <paramref name="vector"/> (32-255). It is delivered through the IDT at
    /// the next instruction boundary where IF=1 and no STI shadow is active. Called by the hypervisor only.
    /// </summary>
    public void RequestInterrupt(byte vector)
    {
        switch (vector >> 6)
        {
            case 0: _irr0 |= 1UL << (vector & 63); break;
            case 1: _irr1 |= 1UL << (vector & 63); break;
            case 2: _irr2 |= 1UL << (vector & 63); break;
            default: _irr3 |= 1UL << (vector & 63); break;
        }

        _eventCheck = true;
    }

    private void ResetInterruptState()
    {
        _irr0 = _irr1 = _irr2 = _irr3 = 0;
        _eventCheck = _stiShadow = _queuedException = _windowRequested = _injectedPending = _nmiPending = _nmiBlocked = false;
    }

    private bool Sti()
    {
        if (_ctx.Cpl > Iopl) return Fault(ExceptionVector.GeneralProtection, 0); // SDM Vol. 2B, STI (no VME/PVI)
        // The shadow exists only when STI sets IF from 0 (SDM Vol. 2B, STI): "sti; hlt" cannot lose a wake-up.
        if ((_ctx.Eflags & (uint)EFlags.IF) == 0)
        {
            _ctx.Eflags |= (uint)EFlags.IF;
            _stiShadow = true;
            _eventCheck = true;
        }

        return true;
    }

    private bool Iret(ref Instruction ins)
    {
        if ((_ctx.Eflags & NtFlag) != 0 && !RealMode) return TaskReturn(); // a nested task returns to its caller (System/X86Core.TaskSwitch.cs)
        int size = ins.Code == Code.Iretw ? 2 : 4;
        uint eip = Pop(size);
        uint cs = Pop(size);
        uint flags = Pop(size);
        if (_faulted) return false;
        _nmiBlocked = false; // IRET ends NMI blocking (SDM Vol. 3A, 6.7.1)
        _eventCheck |= _nmiPending;
        if (size == 2)
        {
            eip &= 0xffff;
            flags = (_ctx.Eflags & 0xffff0000) | (flags & 0xffff);
        }
        // The code segment is checked and loaded as for RETF (System/X86Core.FarTransfers.cs), to the same ring or an
        // outer one (System/X86Core.Privilege.cs).
        if (IsReturnToOuterRing((ushort)cs)) return ReturnToOuterRing((ushort)cs, eip, size, flags, stackAdjust: 0);
        if (!CheckCodeTarget((ushort)cs, viaReturn: true, out SegmentRegister cache, out uint address, out uint high)) return false;
        // Before the jump: the rights of the ring IRET runs in; a 32-bit IRET also loads RF (SDM Vol. 2A, IRET), which is
        // how a #DB handler returns to an instruction breakpoint without hitting it again.
        uint writable = FlagsWritableAtCpl() | (size == 4 ? RfFlag : 0);
        if (!CommitCodeTarget(cache, address, high, eip)) return false;
        _ctx.Eflags = (_ctx.Eflags & ~writable) | (flags & writable) | (uint)EFlags.Reserved1;
        if ((_ctx.Eflags & RfFlag) != 0) _eventCheck = true; // RF lasts one instruction (X86Core.Debug.cs)
        FlagsChanged();
        return true;
    }

    /// <summary>Handles pending events at an instruction boundary. False when the core triple-faulted (exit in <see cref="_exit"/>).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ServiceEvents()
    {
        if (_queuedException)
        {
            _queuedException = false;
            RecomputeEventCheck();
            return DeliverException(_queuedVector, _queuedErrorCode);
        }

        if (_injectedPending)
        {
            // An injected external interrupt is delivered first, whatever else is pending (VM entry's event injection).
            _injectedPending = false;
            RecomputeEventCheck();
            return DeliverExternal(_injectedVector);
        }

        if (_stiShadow)
        {
            // The instruction after STI (or MOV SS, POP SS) runs before any interrupt is taken.
            _stiShadow = false;
            return true;
        }

        if (_replayCount != 0 && ReplayPendingAt(_ctx.Eip))
        {
            // An instruction whose MMIO accesses the hypervisor completed re-executes before any interrupt,
            // as if it had not exited (the check stays armed: the next boundary takes the interrupt).
            return true;
        }

        if (TryServiceNmi() is bool nmiDelivered)
        {
            return nmiDelivered;
        }

        if ((_ctx.Eflags & (uint)EFlags.IF) == 0 || (!HasPendingInterrupt && !_windowRequested && !LocalControllerReady))
        {
            RecomputeEventCheck();
            return true;
        }

        if (_windowRequested)
        {
            // The first boundary where an external interrupt can be taken: exit before anything else is delivered,
            // so that the controller outside chooses its vector now.
            _windowRequested = false;
            RecomputeEventCheck();
            _exit = new CpuExit(CpuExitReason.InterruptWindow);
            return false;
        }

        // The local APIC's fixed interrupts come after ExtINT, which ignores priority (QEMU's cpu_get_pic_interrupt).
        byte vector = LocalControllerReady ? _localController!.Acknowledge() : TakeHighestVector();
        RecomputeEventCheck();
        return DeliverExternal(vector);
    }

    /// <summary>Delivers an external interrupt through the IDT; false when the core shut down (exit in <see cref="_exit"/>).</summary>
    private bool DeliverExternal(byte vector)
    {
        if (!IdtLoaded)
        {
            _exit = new CpuExit(CpuExitReason.TripleFault, Vector: vector);
            return false;
        }

        // A fault while delivering it (an unusable gate, a bad handler segment, a stack fault) is raised in its place,
        // as SDM Vol. 3A, 6.15 (interrupt 8, table 6-5) orders: an external interrupt is benign.
        return TryDeliver(vector, _ctx.Eip, hasErrorCode: false, 0, external: true)
            || (ReinjectAfterIntercept(vector, 0, external: true) ?? DeliverDeliveryFault(original: null, first: vector));
    }

    /// <summary>
    /// Arms the per-boundary event check when something must be looked at. Maskable interrupts and the interrupt
    /// window count only while IF is set: with IF clear they cannot be taken, so a kernel's or a guest's interrupts-off
    /// stretch does not pay for a check at every instruction; whatever sets IF again (STI, POPF, IRET, a task switch,
    /// a restore) re-arms it (<see cref="Sti"/>, FlagsChanged, CodeMappingChanged).
    /// </summary>
    private void RecomputeEventCheck() => _eventCheck = _stiShadow || _queuedException || _injectedPending
        || (_nmiPending && !_nmiBlocked) || _instructionBreakpoints != 0 || (_ctx.Eflags & RfFlag) != 0
        || ((_ctx.Eflags & (uint)EFlags.IF) != 0 && (_windowRequested || HasPendingInterrupt || LocalControllerReady));

    private byte TakeHighestVector()
    {
        if (_irr3 != 0) { int b = 63 - System.Numerics.BitOperations.LeadingZeroCount(_irr3); _irr3 &= ~(1UL << b); return (byte)(192 + b); }
        if (_irr2 != 0) { int b = 63 - System.Numerics.BitOperations.LeadingZeroCount(_irr2); _irr2 &= ~(1UL << b); return (byte)(128 + b); }
        if (_irr1 != 0) { int b = 63 - System.Numerics.BitOperations.LeadingZeroCount(_irr1); _irr1 &= ~(1UL << b); return (byte)(64 + b); }
        int c = 63 - System.Numerics.BitOperations.LeadingZeroCount(_irr0); _irr0 &= ~(1UL << c); return (byte)c;
    }

    /// <summary>Vectors whose exceptions push an error code (SDM Vol. 3A, table 6-1).</summary>
    private static bool PushesErrorCode(byte vector) => vector is 8 or 10 or 11 or 12 or 13 or 14 or 17;

    /// <summary>
    /// Delivers a fault-class exception with EIP on the faulting instruction. False when even #DF could not be
    /// delivered: the core is in shutdown (triple fault) and <see cref="_exit"/> says so.
    /// </summary>
    private bool DeliverException(byte vector, uint errorCode)
    {
        if (!IdtLoaded)
        {
            _exit = new CpuExit(CpuExitReason.Exception, Vector: vector, ErrorCode: errorCode);
            return false;
        }

        return TryDeliver(vector, _ctx.Eip, PushesErrorCode(vector), errorCode)
            || (ReinjectAfterIntercept(vector, errorCode, external: false) ?? DeliverDeliveryFault(vector));
    }

    private static bool IsContributory(byte vector) => vector is 0 or 10 or 11 or 12 or 13;

    /// <summary>
    /// Delivering <paramref name="original"/> raised the fault <see cref="TryDeliver"/> recorded. SDM Vol. 3A, 6.15
    /// (interrupt 8, table 6-5): a contributory fault (#DE, #TS, #NP, #SS, #GP) while delivering a contributory one, or a
    /// #PF or contributory fault while delivering a #PF, is a double fault; a fault while delivering #DF is a triple
    /// fault (shutdown); otherwise the new fault is delivered in turn, with these rules again.
    /// </summary>
    /// <param name="original">The exception being delivered, or null for an external interrupt (benign).</param>
    /// <param name="first">The event that began the chain: a triple fault's exit names it.</param>
    private bool DeliverDeliveryFault(byte? original, byte? first = null)
    {
        first ??= original;
        byte fault = _deliveryFaultVector;
        uint error = _deliveryFaultError;
        if (original == ExceptionVector.DoubleFault)
        {
            _exit = new CpuExit(CpuExitReason.TripleFault, Vector: first ?? ExceptionVector.DoubleFault);
            return false;
        }

        bool doubleFault = (original is byte o && IsContributory(o) && IsContributory(fault))
            || (original == ExceptionVector.PageFault && (fault == ExceptionVector.PageFault || IsContributory(fault)));
        if (doubleFault)
        {
            (fault, error) = (ExceptionVector.DoubleFault, 0);
        }

        return TryDeliver(fault, _ctx.Eip, PushesErrorCode(fault), error)
            || (ReinjectAfterIntercept(fault, error, external: false) ?? DeliverDeliveryFault(fault, first ?? fault));
    }

    /// <summary>
    /// The last delivery attempt stopped on a guest-physical page the second-level table refused (a page the kernel
    /// write-protected for dirty logging or copy-on-write, or no RAM at all): that is the hypervisor's business, not a
    /// guest fault. The event is re-injected to be delivered first at the next entry, and the core exits with the
    /// intercept, as a VMX exit during event delivery reports the event in the IDT-vectoring information and the VMM
    /// re-injects it (SDM Vol. 3C, 28.2.4). Null when the attempt failed for an architectural fault, to escalate.
    /// </summary>
    private bool? ReinjectAfterIntercept(byte vector, uint errorCode, bool external)
    {
        if (_deliveryIntercept is not { } intercept)
        {
            return null;
        }

        _deliveryIntercept = null;
        if (external)
        {
            InjectExternalInterrupt(vector);
        }
        else
        {
            QueueException(vector, errorCode);
        }

        _interceptCompletable = false; // nothing to complete: the delivery starts again
        _exit = intercept;
        return false;
    }

    /// <summary>
    /// One delivery attempt through an interrupt or trap gate: checks the gate, pushes EFLAGS, CS, EIP (and the error
    /// code), clears TF (and IF for an interrupt gate) and jumps to the handler, switching to the TSS's stack for a
    /// handler in an inner ring (SDM Vol. 3A, 6.12.1). A 16-bit gate pushes words and has a 16-bit offset (Vol. 3A
    /// 6.11, figure 6-2, D = 0). On failure nothing architectural has changed.
    /// </summary>
    private bool TryDeliver(byte vector, uint returnEip, bool hasErrorCode, uint errorCode, bool software = false, bool external = false)
    {
        bool faultedBefore = _faulted;
        CpuExit exitBefore = _exit;
        _deliveryIntercept = null;
        if (RealMode) return TryDeliverReal(vector, returnEip, faultedBefore, exitBefore);
        uint espBefore = _ctx.Esp;
        uint entry = (uint)vector * 8;
        uint ext = external ? 1u : 0u;
        uint idtError = ((uint)vector << 3) | 2 | ext;
        // The gate's checks in the SDM's order (Vol. 2A, INT n, "PROTECTED-MODE"): inside the IDT, a gate type, the DPL
        // of a software interrupt, present; each failure is recorded for DeliverDeliveryFault.
        bool ok = entry + 7 <= Idtr.Limit || DeliveryFault(ExceptionVector.GeneralProtection, idtError);
        uint low = 0, high = 0;
        if (ok)
        {
            low = SupervisorRead32(Idtr.Base + entry);
            high = SupervisorRead32(Idtr.Base + entry + 4);
            ok = !_faulted || DeliveryFault(_exit.Vector, _exit.ErrorCode);
        }

        uint type = (high >> 8) & 0xF;
        ushort selector = (ushort)(low >> 16);
        bool taskGate = ((high >> 8) & 0x1F) == TypeTaskGate;
        ok = ok && ((high & 0x1000) == 0 && (taskGate || type is GateInterrupt32 or GateTrap32 or GateInterrupt16 or GateTrap16)
                || DeliveryFault(ExceptionVector.GeneralProtection, idtError))
            && (!software || (int)((high >> 13) & 3) >= _ctx.Cpl || DeliveryFault(ExceptionVector.GeneralProtection, idtError))
            && ((high & 0x8000) != 0 || DeliveryFault(ExceptionVector.SegmentNotPresent, idtError));
        if (ok && taskGate)
        {
            // A task gate: the handler is a task (System/X86Core.TaskSwitch.cs).
            ok = SwitchTask(selector, TaskSwitchSource.Interrupt, returnEip, hasErrorCode, errorCode) || DeliveryFault(_exit.Vector, _exit.ErrorCode);
            if (!ok)
            {
                _faulted = faultedBefore;
                _exit = exitBefore;
            }
            return ok;
        }
        SegmentRegister handlerCs = default;
        uint csAddress = 0, csHigh = 0;
        // The handler's code segment is checked like a far transfer's (its RPL is ignored): DPL = CPL stays in the
        // ring, DPL < CPL (nonconforming) enters an inner one, DPL > CPL is #GP with the selector, and only then is a
        // segment that is not present #NP (SDM Vol. 2A, INT n, "TRAP-OR-INTERRUPT-GATE", in that order).
        ok = ok && (CodeDescriptor((ushort)(selector & ~3), out handlerCs, out csAddress, out csHigh, checkPresent: false)
            || DeliveryFault(_exit.Vector, _exit.ErrorCode | ext));
        int handlerDpl = (handlerCs.Attributes >> 5) & 3;
        bool conforming = (handlerCs.Attributes & AttrConforming) != 0;
        ok = ok && (handlerDpl <= _ctx.Cpl || DeliveryFault(ExceptionVector.GeneralProtection, SelectorError(selector) | ext));
        ok = ok && ((handlerCs.Attributes & AttrPresent) != 0 || DeliveryFault(ExceptionVector.SegmentNotPresent, SelectorError(selector) | ext));
        uint clearFlags = (uint)EFlags.TF | RfFlag | NtFlag | VmFlag | (type is GateInterrupt32 or GateInterrupt16 ? (uint)EFlags.IF : 0);
        int size = type is GateInterrupt16 or GateTrap16 ? 2 : 4;
        uint handlerEip = size == 2 ? low & 0xffff : (low & 0xffff) | (high & 0xffff0000);
        if (ok && !conforming && handlerDpl < _ctx.Cpl && !ImpliedBootGdt(selector))
        {
            if (!DeliverToInnerRing(handlerCs, handlerEip, returnEip, hasErrorCode, errorCode, clearFlags, size))
            {
                // The new stack's #TS or #SS names its selector with EXT (SDM Vol. 3A, 6.13), as does the #GP(EXT) of a handler
                // offset beyond its segment's limit; a #PF keeps its own code.
                DeliveryFault(_exit.Vector, _exit.Vector is ExceptionVector.InvalidTss or ExceptionVector.StackFault or ExceptionVector.GeneralProtection
                    ? _exit.ErrorCode | ext : _exit.ErrorCode);
                _faulted = faultedBefore;
                _exit = exitBefore;
                return false;
            }
            if (csAddress != 0 || csHigh != 0) MarkAccessed(csAddress, csHigh);
            return true;
        }
        // SDM Vol. 2A, INT n, "INTRA-PRIVILEGE-LEVEL-INTERRUPT": room for the frame on the stack (#SS(EXT)), then the
        // handler's offset within its code segment's limit (#GP(EXT)), before anything is pushed.
        ok = ok && (StackHasRoom(_ctx.Esp, (hasErrorCode ? 4 : 3) * size) || DeliveryFault(ExceptionVector.StackFault, ext));
        ok = ok && (handlerEip <= handlerCs.Limit || DeliveryFault(ExceptionVector.GeneralProtection, ext));
        if (ok)
        {
            Push(_ctx.Eflags, size);
            Push(Cs, size);
            Push(returnEip, size);
            if (hasErrorCode) Push(errorCode, size);
            ok = !_faulted || DeliveryFault(_exit.Vector, _exit.ErrorCode);
        }

        if (!ok) return AbandonDelivery(espBefore, faultedBefore, exitBefore);

        _ctx.Eflags &= ~clearFlags;
        if (csAddress != 0 || csHigh != 0) MarkAccessed(csAddress, csHigh);
        SetSegmentCache(Sreg.Cs, handlerCs with { Selector = (ushort)((selector & ~3) | _ctx.Cpl) });
        _ctx.Eip = handlerEip;
        CodeMappingChanged();
        return true;
    }

    /// <summary>A delivery attempt failed after its pushes: ESP and the recorded exit go back to what they were; always false.</summary>
    private bool AbandonDelivery(uint espBefore, bool faultedBefore, CpuExit exitBefore)
    {
        _ctx.Esp = espBefore;
        _faulted = faultedBefore;
        _exit = exitBefore;
        return false;
    }

    /// <summary>
    /// Delivery in real-address mode (SDM Vol. 3A, 20.1.4): the IDTR locates the interrupt vector table of 4-byte
    /// IP:CS pointers; FLAGS, CS and IP are pushed (no error code), IF, TF and AC cleared, and CS:IP loaded. A vector
    /// beyond the table's limit is #GP; a stack push outside SS's limit is #SS.
    /// </summary>
    private bool TryDeliverReal(byte vector, uint returnEip, bool faultedBefore, CpuExit exitBefore)
    {
        uint entry = (uint)vector * 4;
        if (entry + 3 > Idtr.Limit) return DeliveryFault(ExceptionVector.GeneralProtection, 0);
        uint pointer = SupervisorRead32(Idtr.Base + entry);
        uint espBefore = _ctx.Esp;
        bool ok = !_faulted || DeliveryFault(_exit.Vector, _exit.ErrorCode);
        if (ok)
        {
            Push(_ctx.Eflags & 0xFFFF, 2);
            Push(_ctx.Cs.Selector, 2);
            Push(returnEip & 0xFFFF, 2);
            ok = !_faulted || DeliveryFault(_exit.Vector, _exit.ErrorCode);
        }
        if (!ok) return AbandonDelivery(espBefore, faultedBefore, exitBefore);
        _ctx.Eflags &= ~((uint)EFlags.IF | (uint)EFlags.TF | AcFlag);
        FlagsChanged();
        SetSegmentCache(Sreg.Cs, RealModeSegment(Sreg.Cs, (ushort)(pointer >> 16)));
        _ctx.Eip = pointer & 0xFFFF;
        CodeMappingChanged();
        return true;
    }

    /// <summary>
    /// INT n / INT3 / INTO / INT1 with an IDT: a trap, the pushed EIP is the next instruction. A fault while delivering
    /// it (#GP or #NP for the gate or the handler's segment, a stack fault) is a fault of the INT instruction itself.
    /// </summary>
    private bool DeliverSoftwareInterrupt(byte vector)
    {
        if (TryDeliver(vector, _ctx.Eip, hasErrorCode: false, 0, software: true)) return true;
        if (_deliveryIntercept is { } intercept)
        {
            // A refused guest-physical page: the INT instruction stops with the intercept and runs again after it.
            _deliveryIntercept = null;
            _faulted = true;
            _interceptCompletable = false;
            _exit = intercept;
            return false;
        }
        return Fault(_deliveryFaultVector, _deliveryFaultError);
    }

    // The fault that stopped the last failed delivery attempt (TryDeliver), for the caller to raise in its place, or the
    // second-level intercept that stopped it (ReinjectAfterIntercept).
    private byte _deliveryFaultVector;
    private uint _deliveryFaultError;
    private CpuExit? _deliveryIntercept;

    /// <summary>Records why a delivery failed; always false, to end the check chain.</summary>
    private bool DeliveryFault(byte vector, uint errorCode)
    {
        if (_faulted && _exit.Reason == CpuExitReason.MemoryIntercept)
        {
            _deliveryIntercept ??= _exit;
        }

        (_deliveryFaultVector, _deliveryFaultError) = (vector, errorCode);
        return false;
    }
}
