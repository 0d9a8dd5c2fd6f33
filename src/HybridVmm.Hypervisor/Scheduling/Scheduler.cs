using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.Hypervisor.Scheduling;

/// <summary>
/// Runs every runnable vCPU for one quantum per round, in partition order. A vCPU that needs the root
/// (I/O port, MMIO, device timer) posts an intercept message and stays suspended; the root serves it while
/// the other vCPUs keep running. At the end of each pass the scheduler waits for every outstanding reply
/// (the barrier), so what each guest observes, and the trace, never depends on host thread timing.
/// Halted vCPUs are idled: they take no quantum. What an exit means is the <see cref="ExitDispatcher"/>'s business.
/// </summary>
public sealed class Scheduler
{
    private readonly PartitionTable _partitions;
    private readonly long _quantum;
    private readonly ExitDispatcher _dispatcher;
    private readonly RootChannel _root;
    private readonly InterceptCompletion _completion;
    private readonly Enlightened.Enlightenments _enlightenments;
    private readonly SemaphoreSlim _work = new(0);

    internal Scheduler(PartitionTable partitions, long quantum, ExitDispatcher dispatcher, RootChannel root, InterceptCompletion completion, Enlightened.Enlightenments enlightenments)
    {
        _partitions = partitions;
        _quantum = quantum;
        _dispatcher = dispatcher;
        _root = root;
        _completion = completion;
        _enlightenments = enlightenments;
    }

    /// <summary>Raised on the scheduler thread at each round barrier, after the trace is flushed.</summary>
    public event Action? RoundCompleted;

    public long Rounds { get; private set; }

    /// <summary>Whether <see cref="RunAsync"/> is in progress (vCPUs may be executing on its thread).</summary>
    public bool IsRunning => Volatile.Read(ref _running) != 0;

    private int _running;

    private HostTimePacer? _pacer;
    private long _roundIdleTicks;

    /// <summary>
    /// When set, virtual time that passes while every vCPU is idle (halted until a device timer) passes no faster than
    /// the host's clock (<see cref="HostTimePacer"/>): an interactive console's guest, waiting for a key, then sleeps
    /// instead of racing through virtual time on a host core. Off by default, which leaves a run as fast as the host
    /// allows; either way the guests see the same virtual times.
    /// </summary>
    public bool PaceIdleTimeToHost
    {
        get => _pacer is not null;
        set => _pacer = value ? _pacer ?? new HostTimePacer() : null;
    }

    /// <summary>When set (by a benchmark), every port intercept's round trip is timed on the wall clock into it.</summary>
    public ExitLatency? ExitLatency { get; set; }

    /// <summary>Tells an idle scheduler that something changed (a partition started, resumed or stopped).</summary>
    public void Wake() => _work.Release();

    /// <summary>
    /// The scheduling loop; returns when cancelled, or when <paramref name="untilIdle"/> and nothing can run.
    /// A round gives each vCPU a quantum of virtual ticks: its instructions plus
    /// <see cref="HypervisorOptions.InterceptCostTicks"/> per intercept served by the root. A round is made of
    /// passes; each pass runs every vCPU that still has budget and ends at the barrier, where replies are
    /// applied, so a vCPU resumed by the root continues in the same round. The virtual clock then advances by
    /// the longest slice, at most the quantum, as if every vCPU had its own physical processor; a vCPU whose last
    /// exit's cost crossed the round's end carries the excess into its next round.
    /// </summary>
    public async Task RunAsync(bool untilIdle, CancellationToken cancellationToken, Func<bool>? stopWhen = null)
    {
        Interlocked.Increment(ref _running);
        try
        {
            await RunRoundsAsync(untilIdle, cancellationToken, stopWhen).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _running);
        }
    }

    private async Task RunRoundsAsync(bool untilIdle, CancellationToken cancellationToken, Func<bool>? stopWhen)
    {
        long quantum = _quantum;
        while (!cancellationToken.IsCancellationRequested)
        {
            _partitions.RoundStartTicks = _partitions.Clock.Ticks;
            _partitions.Round++;
            _roundIdleTicks = 0;
            IReadOnlyList<Partition> partitions = _partitions.All;
            foreach (Partition partition in partitions)
            {
                foreach (VirtualProcessor vp in partition.VirtualProcessors)
                {
                    vp.SliceTicks = vp.CarryTicks;
                    vp.CarryTicks = 0;
                }

                EnterPausedRound(partition);
            }

            bool ranAny = false;
            bool ranThisPass;
            do
            {
                ranThisPass = false;
                foreach (Partition partition in partitions)
                {
                    EnterPausedRound(partition);
                    foreach (VirtualProcessor vp in partition.VirtualProcessors)
                    {
                        // The boot vCPU of a partition paused at its breakpoint mid-slice takes up that slice's budget.
                        long budget = vp.ResumeBudget > 0 ? vp.ResumeBudget : quantum - vp.SliceTicks;
                        if (!partition.IsRoot && partition.State == PartitionState.Running
                            && vp.State == VpState.Runnable && budget > 0)
                        {
                            ranThisPass = true;
                            vp.ResumeBudget = 0;
                            await RunSliceAsync(partition, vp, budget, cancellationToken).ConfigureAwait(false);
                        }
                    }
                }

                await _root.CompleteOutstandingAsync(cancellationToken).ConfigureAwait(false);

                // Guests' VMBus messages and signals go to the root once every vCPU is stopped and every worker
                // idle, so nothing runs beside the VMBus server; what it posts back raises SynIC interrupts,
                // which wake halted vCPUs.
                await _enlightenments.RootRequests.FlushToRootAsync(cancellationToken).ConfigureAwait(false);
                _completion.DeliverPostedInterrupts();

                ranThisPass |= WakeHalted(partitions);
                if (!ranThisPass)
                {
                    ranThisPass = await IdleHaltedUntilDeviceTimersAsync(partitions, quantum, cancellationToken).ConfigureAwait(false);
                }

                ranAny |= ranThisPass;
            }
            while (ranThisPass);

            long longest = 0;
            foreach (Partition partition in partitions)
            {
                foreach (VirtualProcessor vp in partition.VirtualProcessors)
                {
                    longest = Math.Max(longest, vp.SliceTicks);
                }
            }

            // A round lasts at most the quantum. A vCPU whose last exit crossed its end (an exit's cost lands whole)
            // carries the excess into its next round, rather than the round stretching to it: otherwise a neighbour
            // whose exits keep crossing the end would stretch every other vCPU's rounds with idle time, and a
            // guest's virtual progress would depend on who runs beside it (issue 14, fairness).
            long advance = Math.Min(longest, quantum);
            bool runnableLeft = false;
            foreach (Partition partition in partitions)
            {
                foreach (VirtualProcessor vp in partition.VirtualProcessors)
                {
                    vp.CarryTicks = Math.Max(0, vp.SliceTicks - advance);

                    // A runnable vCPU that took no turn this round (its carry filled it) runs in the next one, whatever
                    // carry it has left: a carry of exactly the quantum leaves none, and waiting then would never end.
                    // So does a halted one whose timer would wake it but whose carry kept it out of this round (it halted
                    // after a slice of kernel-served exits, which cost time but no quantum): it idles to its timer once
                    // its carry is spent, rather than being taken for a vCPU nothing can wake.
                    runnableLeft |= partition.State == PartitionState.Running && !partition.IsRoot
                        && (vp.State == VpState.Runnable || (vp.State == VpState.Halted && vp.CarryTicks > 0 && WakesOnATimer(partition, vp)));
                }
            }

            _partitions.Clock.Advance(advance);
            Rounds++;
            _partitions.Trace.Flush();
            RoundCompleted?.Invoke();
            if (_pacer is not null)
            {
                await _pacer.PaceAsync(_roundIdleTicks, cancellationToken).ConfigureAwait(false);
            }

            if (stopWhen?.Invoke() == true)
            {
                return;
            }

            if (!ranAny && !runnableLeft)
            {
                if (untilIdle)
                {
                    // Nothing can raise an interrupt any more: vCPUs halted with IF=1 will never wake.
                    StopIdleHalted(partitions);
                    _partitions.Trace.Flush();
                    return;
                }

                await _work.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Runs a vCPU for up to <paramref name="budget"/> ticks, or until it needs the root, halts or faults.</summary>
    private async ValueTask RunSliceAsync(Partition partition, VirtualProcessor vp, long budget, CancellationToken cancellationToken)
    {
        X86Core core = vp.Core;
        while (budget > 0)
        {
            if (partition.InstructionLimit > 0)
            {
                long left = partition.InstructionLimit - core.InstructionsRetired;
                if (left <= 0)
                {
                    _partitions.Stop(partition, new PartitionExit(StopReason.InstructionLimit, 0, null));
                    return;
                }

                budget = Math.Min(budget, left);
            }

            long untilBreak = long.MaxValue;
            if (partition.BreakAtInstruction > 0 && partition.VirtualProcessors.Count > 1)
            {
                // Several vCPUs: the boot vCPU's count, and the pause takes nothing from the slice, which goes on
                // from here when the partition runs again (ReachBreakpoint keeps the budget and every vCPU's place).
                if (vp.Index == 0)
                {
                    untilBreak = partition.BreakAtInstruction - core.InstructionsRetired;
                    if (untilBreak <= 0)
                    {
                        _partitions.ReachBreakpoint(partition, budget);
                        return;
                    }
                }
            }
            else if (partition.BreakAtInstruction > 0)
            {
                long left = partition.BreakAtInstruction - core.InstructionsRetired;
                if (left <= 0)
                {
                    _partitions.ReachBreakpoint(partition);
                    return;
                }

                budget = Math.Min(budget, left);
            }

            if (vp.TimerDeadline is { } apicDeadline)
            {
                // The local APIC's timer and the synthetic timers are the kernel's own: at a deadline they raise their
                // interrupt or send their message, with no exit.
                long untilApic = apicDeadline - _partitions.GuestNow(partition, vp);
                if (untilApic <= 0)
                {
                    vp.TimersExpired(_partitions.GuestNow(partition, vp));
                    continue;
                }

                budget = Math.Min(budget, untilApic);
            }

            ExitOutcome outcome;
            if (vp.Index == 0 && partition.DeviceTimerDeadline is { } deadline)
            {
                long left = deadline - _partitions.GuestNow(partition, vp);
                if (left <= 0)
                {
                    outcome = await _dispatcher.DeviceTimerAsync(partition, vp, cancellationToken).ConfigureAwait(false);
                    if (!Charge(vp, ref budget, outcome))
                    {
                        return;
                    }

                    continue;
                }

                budget = Math.Min(budget, left);
            }

            long before = core.InstructionsRetired;
            core.TscTimeBias = _partitions.GuestNow(partition, vp) - before; // the TSC counts the guest's virtual time
            if (vp.ExitTimestamp != 0)
            {
                ExitLatency?.Record(vp.ExitTimestamp);
                vp.ExitTimestamp = 0;
            }

            CpuExit exit = core.Run(Math.Min(budget, untilBreak));
            if (ExitLatency is not null && exit.Reason is CpuExitReason.IoIn or CpuExitReason.IoOut)
            {
                vp.ExitTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            }

            long retired = core.InstructionsRetired - before;
            budget -= retired;
            vp.SliceTicks += retired;

            outcome = await _dispatcher.DispatchAsync(partition, vp, exit, cancellationToken).ConfigureAwait(false);
            if (!Charge(vp, ref budget, outcome))
            {
                return;
            }
        }
    }

    /// <summary>
    /// A halted vCPU (IF=1) with a timer armed, its local APIC's or (the boot vCPU) its devices', spends the rest of its
    /// quantum idle, as a halted processor lets time pass: if the earliest deadline falls inside the quantum, its time
    /// advances exactly to it; the APIC timer raises its interrupt there, a device timer is served as an intercept there
    /// (the device may raise an interrupt that wakes it). Called only when nothing else could run in the pass, so a
    /// halted vCPU that an interrupt from the root or a VMBus reply would wake wakes as before.
    /// </summary>
    private async ValueTask<bool> IdleHaltedUntilDeviceTimersAsync(IReadOnlyList<Partition> partitions, long quantum, CancellationToken cancellationToken)
    {
        bool any = false, idled = false;
        long idleTicks = 0; // the longest idle stretch of this step: every vCPU that could run was idle meanwhile
        foreach (Partition partition in partitions)
        {
            if (partition.IsRoot || partition.State != PartitionState.Running)
            {
                continue;
            }

            foreach (VirtualProcessor vp in partition.VirtualProcessors)
            {
                long? device = vp.Index == 0 ? partition.DeviceTimerDeadline : null;
                long? apic = vp.TimerDeadline;
                if (vp.State != VpState.Halted || !vp.Core.InterruptsEnabled || (device is null && apic is null) || vp.SliceTicks >= quantum)
                {
                    continue;
                }

                bool apicFirst = apic is { } a && (device is not { } d || a < d);
                long left = (apicFirst ? apic!.Value : device!.Value) - _partitions.GuestNow(partition, vp);
                if (left > quantum - vp.SliceTicks)
                {
                    idleTicks = Math.Max(idleTicks, quantum - vp.SliceTicks);
                    vp.SliceTicks = quantum; // idle to the end of the round; the deadline is in a later one
                    idled = true;
                    continue;
                }

                idleTicks = Math.Max(idleTicks, Math.Max(left, 0));
                vp.SliceTicks += Math.Max(left, 0);
                any = true;
                if (apicFirst)
                {
                    vp.TimersExpired(_partitions.GuestNow(partition, vp));
                    if (vp.Core.HasDeliverableInterrupt)
                    {
                        vp.State = VpState.Runnable;
                    }

                    continue;
                }

                ExitOutcome outcome = await _dispatcher.DeviceTimerAsync(partition, vp, cancellationToken, halted: true).ConfigureAwait(false);
                vp.SliceTicks += outcome.SliceTicks;
            }
        }

        _roundIdleTicks += idleTicks;
        if (any)
        {
            await _root.CompleteOutstandingAsync(cancellationToken).ConfigureAwait(false);
            _completion.DeliverPostedInterrupts();
        }

        return any || idled;
    }

    /// <summary>
    /// A multiprocessor partition paused mid-round (<see cref="Partition.ResumeRoundStart"/>) that runs again goes back
    /// into that round: each vCPU at the ticks it had used, and the clock offset such that the round begins at the guest
    /// time it began at, so its vCPUs see the same times and take turns in the same order as without the pause.
    /// </summary>
    private void EnterPausedRound(Partition partition)
    {
        if (partition.ResumeRoundStart is not { } start || partition.State != PartitionState.Running)
        {
            return;
        }

        // Resumed in the round it paused in (a checkpoint taken at the breakpoint, then started at once): its vCPUs are
        // still where they were, and may have gone on since; in a later round, or restored, they are put back.
        bool later = partition.PausedInRound != _partitions.Round;
        if (later)
        {
            partition.ClockOffset = start - _partitions.RoundStartTicks;
        }

        partition.ResumeRoundStart = null;
        partition.PausedInRound = -1;
        partition.PausedAtBarrier = false;
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            if (later)
            {
                vp.SliceTicks = vp.ResumeSliceTicks;
            }

            vp.ResumeSliceTicks = 0;
        }
    }

    /// <summary>A halted vCPU that a timer, its local APIC's, a synthetic one or (the boot vCPU) its devices', will wake.</summary>
    private static bool WakesOnATimer(Partition partition, VirtualProcessor vp) =>
        vp.Core.InterruptsEnabled && (vp.TimerDeadline is not null || (vp.Index == 0 && partition.DeviceTimerDeadline is not null));

    private static bool Charge(VirtualProcessor vp, ref long budget, ExitOutcome outcome)
    {
        vp.SliceTicks += outcome.SliceTicks;
        budget -= outcome.BudgetTicks;
        return outcome.Continue;
    }

    /// <summary>
    /// A halted vCPU with an interrupt it can take becomes runnable (HLT wakes on an interrupt). Called at the
    /// barrier after the root served the guests' VMBus requests, so a vCPU restored with requests for the root
    /// (held until the root served them) is released here too, once its partition runs.
    /// </summary>
    private static bool WakeHalted(IReadOnlyList<Partition> partitions)
    {
        bool woke = false;
        foreach (Partition partition in partitions)
        {
            foreach (VirtualProcessor vp in partition.VirtualProcessors)
            {
                if (vp.HeldForRoot && partition.State == PartitionState.Running && vp.State == VpState.WaitingForRoot)
                {
                    vp.HeldForRoot = false;
                    vp.State = vp.ReleaseState;
                    woke |= vp.State == VpState.Runnable;
                }

                if (partition.State == PartitionState.Running && vp.State == VpState.Halted && vp.Core.HasDeliverableInterrupt)
                {
                    vp.State = VpState.Runnable;
                    woke = true;
                }
            }
        }

        return woke;
    }

    private void StopIdleHalted(IReadOnlyList<Partition> partitions)
    {
        foreach (Partition partition in partitions)
        {
            if (partition.IsRoot || partition.State != PartitionState.Running)
            {
                continue;
            }

            bool allHalted = true;
            foreach (VirtualProcessor vp in partition.VirtualProcessors)
            {
                allHalted &= vp.State is VpState.Halted or VpState.WaitingForSipi;
            }

            if (allHalted)
            {
                _partitions.Stop(partition, new PartitionExit(StopReason.Halted, 0, null));
            }
        }
    }
}
