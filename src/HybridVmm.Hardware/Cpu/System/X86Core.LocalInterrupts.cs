namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The local interrupt controller wired to a core's interrupt input: a local APIC. The core asks it, at an instruction
/// boundary where IF=1, whether a maskable interrupt is ready and then acknowledges it (the INTA cycle: the APIC moves
/// the vector from IRR to ISR), as VMX's virtual-interrupt delivery evaluates the virtual APIC's RVI against its PPR
/// without a VM exit. The controller itself lives in the hypervisor; the core knows only this contract.
/// </summary>
public interface ILocalInterruptController
{
    /// <summary>A fixed interrupt is ready: the highest requested vector's priority class is above the processor priority.</summary>
    bool HasInterrupt { get; }

    /// <summary>The interrupt acknowledge: the vector the core delivers now (moved from IRR to ISR, or the spurious vector).</summary>
    byte Acknowledge();
}

/// <summary>
/// The core's side of its local interrupt controller and of NMI (SDM Vol. 3A, 6.7.1): an NMI is taken at the next
/// instruction boundary whatever IF says (a MOV SS or STI shadow holds it off for one instruction), through IDT
/// vector 2, and further NMIs are blocked until the next IRET.
/// </summary>
public sealed partial class X86Core
{
    private ILocalInterruptController? _localController;
    private bool _nmiPending;
    private bool _nmiBlocked;

    /// <summary>The local APIC whose interrupts the core takes; null for a core without one (the historic request register only).</summary>
    public ILocalInterruptController? LocalInterruptController
    {
        get => _localController;
        set
        {
            _localController = value;
            RecomputeEventCheck();
        }
    }

    /// <summary>An NMI waits for delivery.</summary>
    public bool NmiPending => _nmiPending;

    /// <summary>An NMI handler runs: further NMIs wait for its IRET.</summary>
    public bool NmiBlocked => _nmiBlocked;

    /// <summary>Tells the core that its local interrupt controller's state changed (IRR, ISR, TPR): it looks again at the next boundary.</summary>
    public void LocalInterruptsChanged() => RecomputeEventCheck();

    /// <summary>Raises NMI (the local APIC's NMI delivery mode). A second NMI while one is pending is the same NMI.</summary>
    public void RequestNmi()
    {
        _nmiPending = true;
        _eventCheck = true;
    }

    /// <summary>Puts NMI state back (saved state): pending and blocked.</summary>
    public void RestoreNmiState(bool pending, bool blocked)
    {
        _nmiPending = pending;
        _nmiBlocked = blocked;
        RecomputeEventCheck();
    }

    private bool LocalControllerReady => _localController is { HasInterrupt: true };

    /// <summary>Delivers a pending NMI when not blocked. Null when none was taken; otherwise the delivery's outcome.</summary>
    private bool? TryServiceNmi()
    {
        if (!_nmiPending || _nmiBlocked)
        {
            return null;
        }

        _nmiPending = false;
        _nmiBlocked = true;
        RecomputeEventCheck();
        // An NMI is delivered like an external interrupt through gate 2, whatever IF says (SDM Vol. 3A, 6.7.1).
        return DeliverExternal(2);
    }
}
