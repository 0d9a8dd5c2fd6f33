using HybridVmm.Hardware.Clock;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// The kernel's partitions, their virtual time and their lifecycle: who exists, what time each vCPU has reached
/// in the current round, and how a partition stops or pauses at a breakpoint. The scheduler, the exit path and
/// the enlightenments get this table, not the whole kernel.
/// </summary>
internal sealed class PartitionTable(TraceRecorder trace, VirtualClock clock, Action wakeScheduler)
{
    private readonly List<Partition> _partitions = new();

    /// <summary>Held while partitions are added or removed (and while a new partition's memory is taken).</summary>
    public object Gate { get; } = new();

    public TraceRecorder Trace => trace;

    public VirtualClock Clock => clock;

    /// <summary>A snapshot of the partitions, root first.</summary>
    public IReadOnlyList<Partition> All
    {
        get
        {
            lock (Gate)
            {
                return _partitions.ToArray();
            }
        }
    }

    /// <summary>The ID the next partition gets.</summary>
    public int NextId
    {
        get
        {
            lock (Gate)
            {
                return _partitions.Count == 0 ? 0 : _partitions[^1].Id + 1;
            }
        }
    }

    public void Add(Partition partition)
    {
        lock (Gate)
        {
            _partitions.Add(partition);
        }

        trace.NamePartition(partition.Id, partition.Name);
    }

    public void Remove(Partition partition)
    {
        lock (Gate)
        {
            _partitions.Remove(partition);
            partition.AddressSpace?.Release();
        }
    }

    public Partition? Find(int partitionId)
    {
        lock (Gate)
        {
            foreach (Partition p in _partitions)
            {
                if (p.Id == partitionId)
                {
                    return p;
                }
            }

            return null;
        }
    }

    /// <summary>The number of the current scheduling round (the scheduler counts them as they begin).</summary>
    public long Round { get; set; }

    /// <summary>Virtual clock ticks when the current scheduling round began.</summary>
    public long RoundStartTicks { get; set; }

    /// <summary>The virtual time a vCPU has reached: the round's start plus the ticks it has used in this round.</summary>
    public long Now(VirtualProcessor vp) => RoundStartTicks + vp.SliceTicks;

    /// <summary>The time the guest's timers see on <paramref name="vp"/>: its machine time plus the partition's clock offset.</summary>
    public long GuestNow(Partition partition, VirtualProcessor vp) => Now(vp) + partition.ClockOffset;

    /// <summary>The virtual time of a partition's events outside any instruction (lifecycle).</summary>
    public long Now(Partition partition)
    {
        long now = clock.Ticks;
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            now = Math.Max(now, Now(vp));
        }

        return now;
    }

    /// <summary>Raised on the scheduler thread when a partition reaches its <see cref="Partition.BreakAtInstruction"/> and pauses.</summary>
    public event Action<PartitionHandle>? BreakpointReached;

    /// <param name="sliceBudget">A multiprocessor partition's boot vCPU: the budget its slice had left, which it takes
    /// up again when the partition runs (<see cref="VirtualProcessor.ResumeBudget"/>).</param>
    public void ReachBreakpoint(Partition partition, long sliceBudget = 0)
    {
        if (partition.VirtualProcessors.Count > 1)
        {
            // Mid-round: every vCPU keeps its place, so that the round goes on as it would have (Partition.ResumeRoundStart).
            partition.ResumeRoundStart = RoundStartTicks + partition.ClockOffset;
            partition.PausedInRound = Round;
            partition.PausedAtBarrier = false;
            foreach (VirtualProcessor vp in partition.VirtualProcessors)
            {
                vp.ResumeSliceTicks = vp.SliceTicks;
                vp.ResumeBudget = vp.Index == 0 ? sliceBudget : 0;
            }
        }

        long at = partition.BreakAtInstruction;
        partition.BreakAtInstruction = 0;
        partition.State = PartitionState.Paused;
        trace.Record(Now(partition), partition.Id, -1, TraceKind.Lifecycle, $"paused at instruction {at}");
        BreakpointReached?.Invoke(partition.Handle);
    }

    /// <summary>
    /// The root pauses a multiprocessor partition at a round barrier (serve's pause, save and migration): its vCPUs'
    /// places in the next round, the ticks each carries into it (<see cref="VirtualProcessor.CarryTicks"/>: its last exit's
    /// cost crossed the end of the round), are kept as the places of a partition paused at the start of that round
    /// (<see cref="Partition.ResumeRoundStart"/>), so that when it runs again, here or restored from a snapshot or a
    /// migration stream, each vCPU opens its round where it would have, with the budget it would have had. Without this the
    /// carries would be spent by the scheduler while the partition is paused, or lost in a snapshot, and the vCPUs would
    /// take turns at other instructions than in an uninterrupted run. Call between rounds only.
    /// </summary>
    public void HoldPlacesAtBarrier(Partition partition)
    {
        if (partition.VirtualProcessors.Count == 1 || partition.ResumeRoundStart is not null)
        {
            // One vCPU: its place in a round is its own business (nothing else runs between its slices). Places already
            // held (restored, not yet run): they stay.
            return;
        }

        partition.ResumeRoundStart = clock.Ticks + partition.ClockOffset;
        partition.PausedInRound = -1;
        partition.PausedAtBarrier = true;
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            vp.ResumeSliceTicks = vp.CarryTicks;
            vp.ResumeBudget = 0;
            vp.CarryTicks = 0;
        }
    }

    /// <summary>
    /// A partition paused at a round barrier whose time ran on with the machine's: its round now begins at the guest time
    /// of this barrier. Call between rounds only.
    /// </summary>
    public void CatchUpPausedAtBarrier(Partition partition)
    {
        if (partition.PausedAtBarrier && partition.ResumeRoundStart is not null)
        {
            partition.ResumeRoundStart = clock.Ticks + partition.ClockOffset;
        }
    }

    /// <summary>Stops a partition on a guest fault, with the diagnostic the CLI prints: the cause and the vCPU's state.</summary>
    public void Fault(Partition partition, VirtualProcessor vp, string what)
    {
        partition.Statistics.CountIntercept("fault");
        string diagnostic = $"guest fault: {what}\n{vp.Core.DescribeState()}";
        trace.Record(Now(vp), partition.Id, vp.Index, TraceKind.Fault, what);
        Stop(partition, new PartitionExit(StopReason.GuestFault, 0, diagnostic));
    }

    /// <summary>
    /// A vCPU shut down (a triple fault): on a PC the chipset answers the shutdown cycle with a reset, and Hyper-V and
    /// QEMU reset the VM. The partition stops as a reset does (the root reboots it where it reboots guests); the exit
    /// keeps the cause and the registers, as a fault's does.
    /// </summary>
    public void TripleFault(Partition partition, VirtualProcessor vp, string what)
    {
        partition.Statistics.CountIntercept("triple-fault");
        string diagnostic = $"triple fault: {what}\n{vp.Core.DescribeState()}";
        trace.Record(Now(vp), partition.Id, vp.Index, TraceKind.Fault, $"triple fault: {what}");
        Stop(partition, new PartitionExit(StopReason.Reset, 0, diagnostic));
    }

    public void Stop(Partition partition, PartitionExit exit)
    {
        if (partition.State == PartitionState.Stopped)
        {
            return;
        }

        long time = Now(partition);
        trace.Record(time, partition.Id, -1, TraceKind.Lifecycle, exit.Reason switch
        {
            StopReason.GuestExit => $"stopped guest-exit value={exit.ExitValue}",
            StopReason.GuestFault => "stopped guest-fault",
            StopReason.Halted => "stopped halted",
            StopReason.WorkerFailure => "stopped worker-failure",
            StopReason.InstructionLimit => $"stopped instruction-limit {partition.InstructionLimit}",
            StopReason.PoweredOff => "stopped power-off",
            StopReason.Reset => exit.Diagnostic is null ? "stopped reset" : "stopped reset triple-fault",
            _ => "stopped by-root",
        });
        partition.Statistics.StopTicks = time;
        partition.MarkStopped(exit);
        wakeScheduler();
    }
}
