using HybridVmm.Hypervisor.GuestMemory;
using HybridVmm.Hardware.Cpu;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// An isolation boundary: its own guest-physical address space, its own virtual processors. The root
/// partition (Id 0) has no guest address space here: its "OS" is the HostOS code, which reaches the
/// kernel only through <see cref="RootPartitionApi"/>.
/// </summary>
internal sealed class Partition
{
    private readonly List<VirtualProcessor> _vps = new();
    private readonly TaskCompletionSource<PartitionExit> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal Partition(int id, string name, GuestPhysicalAddressSpace? addressSpace, long instructionLimit)
    {
        Id = id;
        Name = name;
        AddressSpace = addressSpace;
        InstructionLimit = instructionLimit;
    }

    public int Id { get; }

    public string Name { get; }

    public bool IsRoot => Id == 0;

    public PartitionHandle Handle => new(Id);

    /// <summary>Guest time (<see cref="ClockOffset"/>) at which the root's devices want a device-timer intercept; null when none is armed.</summary>
    public long? DeviceTimerDeadline { get; set; }

    /// <summary>
    /// The guest's clock minus the machine's: the time the guest's timers (its devices', its local APICs') run on is
    /// the machine's virtual time plus this. Zero for a partition booted on this machine; a partition restored from a
    /// snapshot or a migration stream continues the clock it was saved with, whatever the machine's clock reads (QEMU
    /// migrates its virtual clock the same way, and KVM offsets kvmclock and the TSC). The trace stays on machine time.
    /// </summary>
    public long ClockOffset { get; set; }

    /// <summary>A restored partition's saved clock, applied as <see cref="ClockOffset"/> when it first starts.</summary>
    public long? ResumeGuestClock { get; set; }

    /// <summary>
    /// A multiprocessor partition paused in the middle of a scheduling round (at its boot vCPU's breakpoint): the guest
    /// time that round began at. When the partition runs again, the scheduler puts it back in that round (each vCPU at
    /// its <see cref="VirtualProcessor.ResumeSliceTicks"/>, the clock offset such that the round begins at this guest
    /// time), so its vCPUs take turns as they would have without the pause. Null otherwise.
    /// </summary>
    public long? ResumeRoundStart { get; set; }

    /// <summary>The round (<see cref="PartitionTable.Round"/>) it paused in: resumed in that same round, its vCPUs' places are still theirs.</summary>
    public long PausedInRound { get; set; } = -1;

    /// <summary>
    /// Its places (<see cref="ResumeRoundStart"/>) were taken when the root paused it at a round barrier
    /// (<see cref="PartitionTable.HoldPlacesAtBarrier"/>) rather than at a breakpoint: the machine's time that passes while
    /// it is paused passes for the guest too, as for a paused VM of one vCPU, so its round begins at the guest time the
    /// barrier it runs again at (or the barrier a snapshot is taken at) has reached.
    /// </summary>
    public bool PausedAtBarrier { get; set; }

    /// <summary>The guest time a partition paused mid-round had reached: its round's start plus its longest slice.</summary>
    internal long? PausedGuestClock
    {
        get
        {
            if (ResumeRoundStart is not { } start)
            {
                return null;
            }

            long longest = 0;
            foreach (VirtualProcessor vp in _vps)
            {
                longest = Math.Max(longest, vp.ResumeSliceTicks);
            }

            return start + longest;
        }
    }

    public GuestPhysicalAddressSpace? AddressSpace { get; }

    /// <summary>Zero means no limit.</summary>
    public long InstructionLimit { get; }

    public PartitionState State { get; internal set; }

    /// <summary>When non-zero, the partition pauses as soon as its boot vCPU has retired this many instructions.</summary>
    public long BreakAtInstruction { get; internal set; }

    public PartitionStatistics Statistics { get; } = new();

    /// <summary>The synthetic (TLFS) state: guest OS ID, hypercall page, privileges, grants, connections.</summary>
    public Hv1.HvPartitionState Hv { get; } = new();

    public IReadOnlyList<VirtualProcessor> VirtualProcessors => _vps;

    /// <summary>Completes when the partition stops, with the reason.</summary>
    public Task<PartitionExit> Exited => _exited.Task;

    internal PartitionExit? Exit { get; private set; }

    /// <summary>The most virtual processors a partition may have (xAPIC IDs and the MADT would allow 255).</summary>
    public const int MaxProcessors = 64;

    /// <summary>The local APICs' bus, once the partition has more than one vCPU.</summary>
    internal ApicBus? ApicBus { get; set; }

    /// <summary>
    /// Adds a vCPU. The first is the bootstrap processor; the others are application processors, which wait for a
    /// start-up IPI (<see cref="VpState.WaitingForSipi"/>) with the APIC ID of their index, their core in the INIT
    /// state (<paramref name="signature"/>, the processor signature INIT leaves in EDX).
    /// </summary>
    internal VirtualProcessor AddVp(X86Core core, uint signature = 0)
    {
        var vp = new VirtualProcessor(_vps.Count, core);
        vp.Apic = new Apic.LocalApic(core, (byte)vp.Index, bootstrap: vp.Index == 0) { Bus = ApicBus };
        if (vp.Index > 0)
        {
            core.ResetToRealMode(0xF000, 0xFFF0, signature);
            vp.State = VpState.WaitingForSipi;
        }

        core.LocalInterruptController = vp.Apic;
        vp.Synic = new SynIc.SyntheticInterruptController(AddressSpace, vp.Apic);
        _vps.Add(vp);
        Statistics.TranslatorSource ??= TranslatorStatistics;
        Statistics.RetiredSource ??= RetiredByAll;
        return vp;
    }

    /// <summary>A partition's instructions: every vCPU's (the instruction limit counts each vCPU's own; a breakpoint, the boot vCPU's).</summary>
    private long RetiredByAll()
    {
        long sum = 0;
        foreach (VirtualProcessor vp in _vps)
        {
            sum += vp.Core.InstructionsRetired;
        }

        return sum;
    }

    /// <summary>The translator's counters over every vCPU (the compile counts belong to the partition's shared cache).</summary>
    private JitStatistics TranslatorStatistics()
    {
        JitStatistics all = _vps[0].Core.JitStatistics;
        for (int i = 1; i < _vps.Count; i++)
        {
            JitStatistics s = _vps[i].Core.JitStatistics;
            all = all with
            {
                BlockEntries = all.BlockEntries + s.BlockEntries,
                BlockExitsEarly = all.BlockExitsEarly + s.BlockExitsEarly,
                InstructionsInBlocks = all.InstructionsInBlocks + s.InstructionsInBlocks,
            };
        }
        return all;
    }

    internal void MarkStopped(PartitionExit exit)
    {
        State = PartitionState.Stopped;
        Exit = exit;
        foreach (VirtualProcessor vp in _vps)
        {
            vp.State = VpState.Stopped;
        }

        _exited.TrySetResult(exit);
    }
}
