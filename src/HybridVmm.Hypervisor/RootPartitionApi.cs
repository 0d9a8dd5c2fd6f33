using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor;

/// <summary>
/// The kernel's root-only interface, in the role of the hypercalls Hyper-V reserves for the root partition
/// (HvCreatePartition, HvMapGpaPages, HvSetVpRegisters, ...). The HostOS reaches the kernel only through it.
/// </summary>
public sealed partial class RootPartitionApi
{
    private readonly HypervisorKernel _kernel;

    internal RootPartitionApi(HypervisorKernel kernel) => _kernel = kernel;

    public TraceRecorder Trace => _kernel.Trace;

    public global::HybridVmm.Hypervisor.Intercepts.DeviceHosting Hosting => _kernel.Options.Hosting;

    public Scheduling.Scheduler Scheduler => _kernel.Scheduler;

    public Hardware.Clock.VirtualClock Clock => _kernel.Clock;

    /// <summary>Intercepts for the root to serve, in the order the kernel raised them.</summary>
    public MessagePort<InterceptMessage> Intercepts => _kernel.InterceptPort;

    /// <summary>Host frames still free for new partitions.</summary>
    public long FreeMemoryBytes => (long)_kernel.Frames.FreeFrames << Hardware.Memory.HostPhysicalMemory.FrameShift;

    /// <summary>The most virtual processors a partition may have.</summary>
    public const int MaxProcessors = Partition.MaxProcessors;

    /// <summary>
    /// Creates a child partition with <paramref name="memoryBytes"/> of RAM (laid out as <see cref="Hardware.Memory.GuestRam"/> says) and <paramref name="processors"/>
    /// vCPUs (1 to <see cref="MaxProcessors"/>): the first starts at the boot state, the others wait for a start-up IPI.
    /// Null when host memory is short.
    /// </summary>
    public PartitionHandle? CreatePartition(string name, ulong memoryBytes, long instructionLimit = 0, int processors = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(processors, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(processors, MaxProcessors);
        Partition? partition = _kernel.CreateChild(name, memoryBytes, instructionLimit, processors);
        if (partition is null)
        {
            return null;
        }

        _kernel.Trace.Record(_kernel.Now(partition), partition.Id, -1, TraceKind.Lifecycle, $"created memory={memoryBytes / 1024}KiB vcpus={partition.VirtualProcessors.Count}");
        return partition.Handle;
    }

    /// <summary>The partition a handle names; a handle of a deleted or never-created partition is a caller bug.</summary>
    private Partition Get(PartitionHandle handle) =>
        _kernel.Find(handle.Id) is { IsRoot: false } partition
            ? partition
            : throw new ArgumentException($"no guest partition with ID {handle.Id}", nameof(handle));

    /// <summary>
    /// Every partition the kernel holds, the root's own (ID 0) first, as the root's management enumerates them (Hyper-V's
    /// VMMS lists partitions through the hypervisor's partition properties). The root has no guest-physical RAM or
    /// vCPUs of its own here: it is the host process, and its threads serve the guests.
    /// </summary>
    public IReadOnlyList<PartitionSummary> Partitions() =>
    [
        .. _kernel.Table.All.Select(p => new PartitionSummary(p.Handle, p.Name, p.IsRoot, p.State, p.AddressSpace?.SizeBytes ?? 0,
            [.. p.VirtualProcessors.Select(vp => vp.State)], p.Statistics)),
    ];

    /// <summary>What the root may know about a partition: name, state, counters, and how it ended.</summary>
    public string Name(PartitionHandle partition) => Get(partition).Name;

    /// <summary>The partition's run state; a deleted partition reads as stopped.</summary>
    public PartitionState State(PartitionHandle partition) => _kernel.Find(partition.Id)?.State ?? PartitionState.Stopped;

    /// <summary>How much of the partition's RAM it shares copy-on-write with its template, and how many pages it has copied.</summary>
    public MemorySharing MemorySharing(PartitionHandle partition) =>
        Get(partition).AddressSpace is { } space ? new MemorySharing(space.SharedPages, space.CopyOnWriteCopies) : default;

    public PartitionStatistics Statistics(PartitionHandle partition) => Get(partition).Statistics;

    /// <summary>Completes when the partition stops, with the reason.</summary>
    public Task<PartitionExit> Exited(PartitionHandle partition) => Get(partition).Exited;

    /// <summary>Bytes of RAM the partition has (from GPA 0, and from 4 GiB for 3584 MiB and more: <see cref="Hardware.Memory.GuestRam"/>).</summary>
    public ulong MemorySizeBytes(PartitionHandle partition) => Get(partition).AddressSpace?.SizeBytes ?? 0;

    /// <summary>Whether any guest-physical address in [<paramref name="first"/>, <paramref name="last"/>] (below 4 GiB) is backed by the partition's RAM.</summary>
    public bool IsRam(PartitionHandle partition, uint first, uint last) => first < Hardware.Memory.GuestRam.BelowFourGiB(MemorySizeBytes(partition));

    /// <summary>The state of one virtual processor (running, waiting for the root, halted, stopped).</summary>
    public VpState VirtualProcessorState(PartitionHandle partition, int vpIndex) => Get(partition).VirtualProcessors[vpIndex].State;

    public int VpCount(PartitionHandle partition) => Get(partition).VirtualProcessors.Count;

    /// <summary>
    /// Asserts a fixed interrupt <paramref name="vector"/> on a vCPU of the partition (a device's interrupt line).
    /// It reaches the vCPU deterministically: before that partition's next intercept completes, or at the
    /// scheduler's next round barrier, whichever comes first.
    /// </summary>
    public void AssertInterrupt(PartitionHandle partition, int vpIndex, byte vector)
    {
        Partition p = Get(partition);
        if ((uint)vpIndex >= (uint)p.VirtualProcessors.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(vpIndex), $"partition {p.Id} has {p.VirtualProcessors.Count} virtual processors");
        }

        _kernel.Interrupts.Post(p.Id, vpIndex, vector);
        if (!_kernel.Scheduler.IsRunning)
        {
            _kernel.Completion.DeliverPostedInterrupts(); // nothing runs a vCPU now: deliver at once
        }
        else
        {
            _kernel.Scheduler.Wake(); // a halted vCPU may wake at the next barrier
        }
    }

    /// <summary>
    /// Sends an interrupt message to the partition's local APICs in the MSI format (<paramref name="address"/> 0xFEExxxxx
    /// with the destination, <paramref name="data"/> with the vector, delivery mode and trigger), as the root's I/O APIC
    /// does for a redirection entry, and Hyper-V's root through HvCallAssertVirtualInterrupt (WHvRequestInterrupt). Like
    /// <see cref="AssertInterrupt"/>, it reaches the vCPUs before the partition's intercept being served completes, or
    /// at the next barrier. The EOI of a level-triggered one comes back as an <see cref="InterceptKind.ApicEoi"/> intercept.
    /// </summary>
    public void SignalMsi(PartitionHandle partition, uint address, uint data)
    {
        Partition p = Get(partition);
        _kernel.Interrupts.PostMsi(p.Id, address, data);
        if (!_kernel.Scheduler.IsRunning)
        {
            _kernel.Completion.DeliverPostedInterrupts();
        }
        else
        {
            _kernel.Scheduler.Wake();
        }
    }

    /// <summary>
    /// Asks for (<paramref name="requested"/>) or withdraws an interrupt-window notification for the boot vCPU, as
    /// Hyper-V's root sets HvRegisterDeliverabilityNotifications for its emulated PIC's ExtINT: when the vCPU reaches
    /// the first instruction boundary where it can take an external interrupt (IF=1, no STI or MOV SS shadow), the
    /// kernel stops it there and posts an <see cref="InterceptKind.InterruptWindow"/> intercept; the root acknowledges
    /// its controller and replies with the vector to inject. Like <see cref="AssertInterrupt"/>, it takes effect
    /// before the partition's intercept being served completes, or at the next barrier.
    /// </summary>
    public void SetInterruptWindow(PartitionHandle partition, bool requested)
    {
        Partition p = Get(partition);
        _kernel.Interrupts.PostWindow(p.Id, 0, requested);
        if (!_kernel.Scheduler.IsRunning)
        {
            _kernel.Completion.DeliverPostedInterrupts();
        }
        else
        {
            _kernel.Scheduler.Wake();
        }
    }

    /// <summary>Messages waiting in a vCPU's SynIC queue for <paramref name="sint"/> (its message slot was full).</summary>
    public int QueuedSynicMessages(PartitionHandle partition, int vpIndex, int sint) => Get(partition).VirtualProcessors[vpIndex].Synic.QueuedMessages(sint);

    /// <summary>
    /// Sets the virtual time at which the partition's devices want a <see cref="InterceptKind.DeviceTimer"/>
    /// intercept (null: none). The boot vCPU stops exactly there; meant to be called while the root serves one of
    /// the partition's intercepts, or while it does not run.
    /// </summary>
    public void SetDeviceTimer(PartitionHandle partition, long? deadline) => Get(partition).DeviceTimerDeadline = deadline;

    /// <summary>A device's run-state request made outside any intercept: exit, pause, power-off or reset at once.</summary>
    public void RequestStop(PartitionHandle partition, InterceptAction action, uint value)
    {
        Partition p = Get(partition);
        switch (action)
        {
            case InterceptAction.Pause:
                Pause(partition);
                break;
            case InterceptAction.ExitGuest:
                _kernel.StopPartition(p, new PartitionExit(StopReason.GuestExit, value, null));
                break;
            case InterceptAction.PowerOff:
                _kernel.StopPartition(p, new PartitionExit(StopReason.PoweredOff, 0, null));
                break;
            case InterceptAction.Reset:
                _kernel.StopPartition(p, new PartitionExit(StopReason.Reset, 0, null));
                break;
            default:
                throw new ArgumentException($"{action} is not a run-state request", nameof(action));
        }
    }

    /// <summary>Raised on the scheduler thread when a partition reaches the instruction given to <see cref="PauseAtInstruction"/> and pauses.</summary>
    public event Action<PartitionHandle>? BreakpointReached
    {
        add => _kernel.Table.BreakpointReached += value;
        remove => _kernel.Table.BreakpointReached -= value;
    }

    /// <summary>
    /// Writes guest memory through the partition's second-level translation (the loader's path). Once the
    /// partition has started, only pages the guest granted (GPADLs) can be written; anything else is refused.
    /// </summary>
    public bool WriteGuestMemory(PartitionHandle partitionHandle, ulong gpa, ReadOnlySpan<byte> data) =>
        Get(partitionHandle).State == PartitionState.Created
            ? Get(partitionHandle).AddressSpace is { } space && space.TryWrite(gpa, data)
            : WriteGrantedMemory(partitionHandle, gpa, data);

    public bool ReadGuestMemory(PartitionHandle partitionHandle, ulong gpa, Span<byte> destination) =>
        Get(partitionHandle).State == PartitionState.Created
            ? Get(partitionHandle).AddressSpace is { } space && space.TryRead(gpa, destination)
            : ReadGrantedMemory(partitionHandle, gpa, destination);

    /// <summary>
    /// Saved-state access, for save, checkpoints, live migration and cloning: reads any RAM of a partition that
    /// is not running (paused or stopped), as Hyper-V's saved-state path does. A running partition's memory is
    /// reachable only through its grants.
    /// </summary>
    public bool ReadSavedStateMemory(PartitionHandle partitionHandle, ulong gpa, Span<byte> destination) =>
        Get(partitionHandle).State != PartitionState.Running && Get(partitionHandle).AddressSpace is { } space && space.TryRead(gpa, destination);

    /// <summary>The non-zero RAM pages of a partition that is not running (saved-state access).</summary>
    public List<uint> NonZeroPages(PartitionHandle partitionHandle)
    {
        Partition partition = Get(partitionHandle);
        var pages = new List<uint>();
        if (partition.State == PartitionState.Running || partition.AddressSpace is not { } space)
        {
            return pages;
        }

        for (uint page = 0; page < space.PageCount; page++)
        {
            if (!space.IsZeroPage(page))
            {
                pages.Add(page);
            }
        }

        return pages;
    }

    /// <summary>Sets the boot processor's entry state: flat protected mode at <paramref name="eip"/> plus register values.</summary>
    public void SetBootState(PartitionHandle partitionHandle, uint eip, uint eax, uint ebx) =>
        SetBootState(partitionHandle, new BootRegisters(eip, eax, ebx));

    /// <summary>Puts the boot vCPU in the state a loader hands over (<see cref="BootRegisters"/>).</summary>
    public void SetBootState(PartitionHandle partitionHandle, BootRegisters boot)
    {
        Partition partition = Get(partitionHandle);
        Hardware.Cpu.X86Core core = partition.VirtualProcessors[0].Core;
        core.ResetToFlatProtectedMode(boot.Eip);
        core[Hardware.Cpu.Gpr.Eax] = boot.Eax;
        core[Hardware.Cpu.Gpr.Ebx] = boot.Ebx;
        core[Hardware.Cpu.Gpr.Esi] = boot.Esi;
        core.Cs = boot.CodeSelector;
        core.Ds = core.Es = core.Fs = core.Gs = core.Ss = boot.DataSelector;
    }

    public void Start(PartitionHandle partitionHandle)
    {
        Partition partition = Get(partitionHandle);
        if (partition.State is PartitionState.Created or PartitionState.Paused)
        {
            _kernel.Trace.Record(_kernel.Now(partition), partition.Id, -1, TraceKind.Lifecycle,
                partition.State == PartitionState.Created ? $"started eip=0x{partition.VirtualProcessors[0].Core.Eip:x8}" : "resumed");
            if (partition.Statistics.StartTicks == PartitionStatistics.NotStarted)
            {
                partition.Statistics.StartTicks = _kernel.Now(partition);
            }

            if (partition.State == PartitionState.Created && partition.ResumeGuestClock is { } guestClock)
            {
                // A restored partition's clock continues from its snapshot at the moment it starts running here.
                partition.ClockOffset = guestClock - _kernel.Now(partition);
                partition.ResumeGuestClock = null;
            }

            if (partition.PausedAtBarrier)
            {
                // Paused at a barrier: its vCPUs take up their places in the round that begins now, at the guest time the
                // machine's clock has brought it to meanwhile.
                _kernel.Table.CatchUpPausedAtBarrier(partition);
                partition.PausedAtBarrier = false;
            }

            partition.State = PartitionState.Running;
            _kernel.Scheduler.Wake();
        }
    }

    /// <summary>
    /// Pauses a running partition between two rounds (call it at a round barrier, <see cref="Scheduling.Scheduler.RoundCompleted"/>).
    /// A multiprocessor partition keeps each vCPU's place in the next round (<see cref="PartitionTable.HoldPlacesAtBarrier"/>),
    /// for when it resumes here and for a snapshot or a migration taken while it is paused.
    /// </summary>
    public void Pause(PartitionHandle partitionHandle)
    {
        Partition partition = Get(partitionHandle);
        if (partition.State == PartitionState.Running)
        {
            _kernel.Table.HoldPlacesAtBarrier(partition);
            partition.State = PartitionState.Paused;
            _kernel.Trace.Record(_kernel.Now(partition), partition.Id, -1, TraceKind.Lifecycle, "paused");
        }
    }

    public void Stop(PartitionHandle partitionHandle) =>
        _kernel.StopPartition(Get(partitionHandle), new PartitionExit(StopReason.StoppedByRoot, 0, null));

    /// <summary>Stops (if needed) and deletes the partition, returning its frames to the kernel.</summary>
    public void Delete(PartitionHandle partitionHandle)
    {
        Partition partition = Get(partitionHandle);
        Stop(partitionHandle);
        _kernel.Table.Remove(partition);
    }

    /// <summary>
    /// Rapid provisioning: a new partition that shares <paramref name="template"/>'s RAM copy-on-write through
    /// the second-level translation and starts from a copy of its vCPU state. The template should be paused.
    /// </summary>
    public PartitionHandle ClonePartition(PartitionHandle templateHandle, string name)
    {
        Partition template = Get(templateHandle);
        Partition clone = _kernel.CloneChild(template, name);
        _kernel.Trace.Record(_kernel.Now(template), clone.Id, -1, TraceKind.Lifecycle,
            $"cloned from {template.Name} memory={clone.AddressSpace!.SizeBytes / 1024}KiB shared-pages={clone.AddressSpace.SharedPages}");
        return clone.Handle;
    }

    /// <summary>
    /// Pauses the partition once its boot vCPU has retired <paramref name="instructions"/> instructions in total (with
    /// one vCPU, once any has: the same). A multiprocessor partition pauses at that instruction in the middle of its
    /// round and continues the round when it runs again, here or restored elsewhere.
    /// </summary>
    public void PauseAtInstruction(PartitionHandle partitionHandle, long instructions) => Get(partitionHandle).BreakAtInstruction = instructions;

    public Hardware.Cpu.CpuState GetVpState(PartitionHandle partitionHandle, int vpIndex = 0) =>
        Get(partitionHandle).VirtualProcessors[vpIndex].Core.SaveState();

    public void SetVpState(PartitionHandle partitionHandle, in Hardware.Cpu.CpuState state, int vpIndex = 0) =>
        Get(partitionHandle).VirtualProcessors[vpIndex].Core.RestoreState(state);

    /// <summary>Restores the counters of a partition brought back from a snapshot or a migration stream.</summary>
    public void RestoreStatistics(PartitionHandle partitionHandle, long virtualTicks, long channelMessages, IEnumerable<KeyValuePair<string, long>> intercepts)
    {
        Partition partition = Get(partitionHandle);
        partition.Statistics.StartTicks = _kernel.Clock.Ticks - virtualTicks;
        partition.Statistics.ChannelMessages = channelMessages;
        foreach ((string kind, long count) in intercepts)
        {
            partition.Statistics.SetIntercepts(kind, count);
        }
    }

    /// <summary>The time on the partition's own clock now, which its devices and local APICs run on (what a snapshot carries).</summary>
    public long GuestClock(PartitionHandle partitionHandle)
    {
        Partition partition = Get(partitionHandle);
        _kernel.Table.CatchUpPausedAtBarrier(partition);
        return partition.ResumeGuestClock ?? partition.PausedGuestClock ?? _kernel.Now(partition) + partition.ClockOffset;
    }

    /// <summary>
    /// A partition restored from a snapshot or a migration stream: when it starts, its clock reads
    /// <paramref name="guestClock"/> (the <see cref="GuestClock"/> it was saved at), so the absolute deadlines its devices
    /// and local APICs saved fall where they fell on the machine it was saved on.
    /// </summary>
    /// <remarks>
    /// A multiprocessor partition saved in the middle of a round (its vCPUs' places restored by
    /// <see cref="SetEnlightenedState"/>) continues that round: it began <paramref name="guestClock"/> minus the longest
    /// slice, the time the partition had reached being its furthest vCPU's.
    /// </remarks>
    public void ContinueGuestClock(PartitionHandle partitionHandle, long guestClock)
    {
        Partition partition = Get(partitionHandle);
        partition.ResumeGuestClock = guestClock;
        long longest = 0;
        bool placed = false;
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            longest = Math.Max(longest, vp.ResumeSliceTicks);
            placed |= vp.ResumeSliceTicks > 0 || vp.ResumeBudget > 0;
        }

        partition.ResumeRoundStart = placed ? guestClock - longest : null;
    }

    /// <summary>Each vCPU's work as the kernel scheduled it: instructions, HLT exits, IPIs sent and received.</summary>
    public IReadOnlyList<VcpuStatistics> VcpuStatistics(PartitionHandle partitionHandle) =>
        [.. Get(partitionHandle).VirtualProcessors.Select(vp => new VcpuStatistics(vp.Index, vp.Core.InstructionsRetired, vp.Halts, vp.IpisSent, vp.IpisReceived))];

    /// <summary>Instructions the boot vCPU has retired: what <see cref="PauseAtInstruction"/> counts.</summary>
    public long BootInstructionsRetired(PartitionHandle partitionHandle) => Get(partitionHandle).VirtualProcessors[0].Core.InstructionsRetired;

    /// <summary>Virtual ticks since the partition started (its share of the machine's virtual time).</summary>
    public long VirtualTicks(PartitionHandle partitionHandle) => Get(partitionHandle).Statistics.VirtualTicks(_kernel.Clock.Ticks);

    /// <summary>Live migration: write-protect all RAM and log the pages the guest writes from now on.</summary>
    public void StartDirtyTracking(PartitionHandle partitionHandle) => Get(partitionHandle).AddressSpace!.StartDirtyTracking();

    public List<uint> CollectDirtyPages(PartitionHandle partitionHandle) => Get(partitionHandle).AddressSpace!.CollectDirtyPages();

    public void StopDirtyTracking(PartitionHandle partitionHandle) => Get(partitionHandle).AddressSpace!.StopDirtyTracking();

    /// <summary>
    /// Type 1 configuration: moves a partition's device model into the kernel, which then serves that
    /// partition's intercepts itself, synchronously, with no message to the root.
    /// </summary>
    public void InstallInKernelDevices(PartitionHandle partitionHandle, Func<InterceptMessage, InterceptReply> deviceModel)
    {
        Partition partition = Get(partitionHandle);
        if (_kernel.Options.Hosting != global::HybridVmm.Hypervisor.Intercepts.DeviceHosting.Type1)
        {
            throw new InvalidOperationException("device models run in the kernel only in the Type 1 configuration");
        }

        _kernel.InKernelDevices[partition.Id] = deviceModel;
    }

    /// <summary>
    /// Lets the kernel hand intercepts to <paramref name="handler"/> on the vCPU's own thread (null: only through
    /// <see cref="Intercepts"/>). Set while the root's message loop runs; replies still take effect at the barrier.
    /// </summary>
    public void ServeDirectly(RootDirectSwitch? handler) => _kernel.RootChannel.Direct = handler;

    /// <summary>Completes an intercept; the vCPU resumes at the scheduler's next round barrier.</summary>
    public ValueTask CompleteInterceptAsync(InterceptReply reply, CancellationToken cancellationToken = default) =>
        _kernel.ReplyPort.SendAsync(reply, cancellationToken);
}

/// <summary>One vCPU's counters (<see cref="RootPartitionApi.VcpuStatistics"/>); HLT and IPI counts start when the partition is created or restored.</summary>
public sealed record VcpuStatistics(int Index, long Instructions, long Halts, long IpisSent, long IpisReceived);
