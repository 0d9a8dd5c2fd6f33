using HybridVmm.Hardware.Cpu;

namespace HybridVmm.Hypervisor.Partitions;

public enum VpState
{
    Runnable,
    /// <summary>Suspended on an intercept until the root partition replies.</summary>
    WaitingForRoot,
    Halted,
    Stopped,
    /// <summary>An application processor after power-on or INIT: it runs nothing until a start-up IPI (SDM Vol. 3A, 9.4.4).</summary>
    WaitingForSipi,
}

/// <summary>A virtual processor: a hardware core bound to one partition's second-level translation.</summary>
internal sealed class VirtualProcessor
{
    internal VirtualProcessor(int index, X86Core core)
    {
        Index = index;
        Core = core;
    }

    public int Index { get; }

    public X86Core Core { get; }

    public VpState State { get; internal set; }

    /// <summary>HLT exits since the partition was created (or restored): how often this vCPU gave its processor back.</summary>
    public long Halts { get; internal set; }

    /// <summary>Interprocessor interrupts this vCPU sent through its ICR (each send counts once, whatever it reached).</summary>
    public long IpisSent { get; internal set; }

    /// <summary>Interprocessor interrupts that reached this vCPU: fixed, lowest-priority, NMI, INIT and start-up.</summary>
    public long IpisReceived { get; internal set; }

    /// <summary>This vCPU's synthetic interrupt controller (TLFS chapter 11).</summary>
    public SynIc.SyntheticInterruptController Synic { get; internal set; } = null!;

    /// <summary>This vCPU's local APIC (SDM Vol. 3A, chapter 11), the core's interrupt controller.</summary>
    public Apic.LocalApic Apic { get; internal set; } = null!;

    /// <summary>
    /// The guest time of this vCPU's next timer event, its local APIC timer's or a synthetic timer's (TLFS 12): the
    /// kernel's own timers, which the scheduler stops the vCPU at exactly (no exit, no root).
    /// </summary>
    internal long? TimerDeadline
    {
        get
        {
            long? apic = Apic.TimerDeadline, synthetic = Synic.Timers.NextDeadline;
            return apic is null ? synthetic : synthetic is null ? apic : Math.Min(apic.Value, synthetic.Value);
        }
    }

    /// <summary>The scheduler reached <see cref="TimerDeadline"/> (guest time <paramref name="now"/>): every timer due fires.</summary>
    internal void TimersExpired(long now)
    {
        Apic.TimerExpired(now);
        if (Synic.Timers.NextDeadline is { } due && due <= now)
        {
            Synic.Timers.Expire(now);
        }
    }

    /// <summary>
    /// The root's 8259 asks for an interrupt window (its INTR is high) and the window has not opened yet. The core is
    /// asked for the window only while the APIC lets ExtINT through (LINT0 unmasked, or the APIC globally disabled).
    /// </summary>
    internal bool ExtIntRequested { get; set; }

    /// <summary>Passes the 8259's request to the core as the APIC's LINT0 allows now; call after either changes.</summary>
    internal void SyncInterruptWindow() => Core.RequestInterruptWindow(ExtIntRequested && Apic.AcceptsExtInt);

    /// <summary>When a timed port intercept left the guest (Stopwatch ticks; 0 = none): see <see cref="Scheduling.ExitLatency"/>.</summary>
    internal long ExitTimestamp { get; set; }

    /// <summary>Virtual ticks this vCPU has used in the current scheduling round.</summary>
    internal long SliceTicks { get; set; }

    /// <summary>
    /// Ticks this vCPU used beyond the round it ran in (its last exit's cost crossed the round's end): they open its
    /// next round, so its own time runs on unbroken while the round, and every other vCPU, keeps the quantum.
    /// </summary>
    internal long CarryTicks { get; set; }

    /// <summary>Virtual time at which the pending intercept was raised.</summary>
    internal long PendingTime { get; set; }

    /// <summary>The exit that is waiting for the root's reply.</summary>
    internal CpuExit PendingExit { get; set; }

    /// <summary>
    /// Restored with requests for the root still queued: the vCPU waits (as <see cref="VpState.WaitingForRoot"/>)
    /// until the root has served them, as it did when it was saved, then takes <see cref="ReleaseState"/>.
    /// </summary>
    internal bool HeldForRoot { get; set; }

    internal VpState ReleaseState { get; set; }

    /// <summary>
    /// A multiprocessor partition paused mid-round keeps each vCPU's place in that round here (<see cref="SliceTicks"/>
    /// when it paused), and the boot vCPU the budget its interrupted slice had left (0: none), until it runs again
    /// (<see cref="Partition.ResumeRoundStart"/>): saved in "runstate.vp{n}" (<see cref="VpRunState"/>).
    /// </summary>
    internal long ResumeSliceTicks { get; set; }

    internal long ResumeBudget { get; set; }
}
