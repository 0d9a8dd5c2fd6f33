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

    public Scheduling.DeviceHosting Hosting => _kernel.Options.Hosting;

    public Scheduling.Scheduler Scheduler => _kernel.Scheduler;

    public Hardware.Clock.VirtualClock Clock => _kernel.Clock;

    /// <summary>Intercepts for the root to serve, in the order the kernel raised them.</summary>
    public MessagePort<InterceptMessage> Intercepts => _kernel.InterceptPort;

    /// <summary>Host frames still free for new partitions.</summary>
    public long FreeMemoryBytes => (long)_kernel.Frames.FreeFrames << Hardware.Memory.HostPhysicalMemory.FrameShift;

    /// <summary>Creates a child partition with <paramref name="memoryBytes"/> of RAM at GPA 0 and one vCPU. Null when host memory is short.</summary>
    public Partition? CreatePartition(string name, uint memoryBytes, long instructionLimit = 0)
    {
        Partition? partition = _kernel.CreateChild(name, memoryBytes, instructionLimit);
        if (partition is not null)
        {
            _kernel.Trace.Record(_kernel.Now(partition), partition.Id, -1, TraceKind.Lifecycle, $"created memory={memoryBytes / 1024}KiB vcpus={partition.VirtualProcessors.Count}");
        }

        return partition;
    }

    /// <summary>
    /// Writes guest memory through the partition's second-level translation (the loader's path). Once the
    /// partition has started, only pages the guest granted (GPADLs) can be written; anything else is refused.
    /// </summary>
    public bool WriteGuestMemory(Partition partition, uint gpa, ReadOnlySpan<byte> data) =>
        partition.State == PartitionState.Created
            ? partition.AddressSpace is { } space && space.TryWrite(gpa, data)
            : WriteGrantedMemory(partition, gpa, data);

    public bool ReadGuestMemory(Partition partition, uint gpa, Span<byte> destination) =>
        partition.State == PartitionState.Created
            ? partition.AddressSpace is { } space && space.TryRead(gpa, destination)
            : ReadGrantedMemory(partition, gpa, destination);

    /// <summary>
    /// Saved-state access, for save, checkpoints, live migration and cloning: reads any RAM of a partition that
    /// is not running (paused or stopped), as Hyper-V's saved-state path does. A running partition's memory is
    /// reachable only through its grants.
    /// </summary>
    public bool ReadSavedStateMemory(Partition partition, uint gpa, Span<byte> destination) =>
        partition.State != PartitionState.Running && partition.AddressSpace is { } space && space.TryRead(gpa, destination);

    /// <summary>The non-zero RAM pages of a partition that is not running (saved-state access).</summary>
    public List<uint> NonZeroPages(Partition partition)
    {
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
    public void SetBootState(Partition partition, uint eip, uint eax, uint ebx)
    {
        Hardware.Cpu.X86Core core = partition.VirtualProcessors[0].Core;
        core.ResetToFlatProtectedMode(eip);
        core[Hardware.Cpu.Gpr.Eax] = eax;
        core[Hardware.Cpu.Gpr.Ebx] = ebx;
    }

    public void Start(Partition partition)
    {
        if (partition.State is PartitionState.Created or PartitionState.Paused)
        {
            _kernel.Trace.Record(_kernel.Now(partition), partition.Id, -1, TraceKind.Lifecycle,
                partition.State == PartitionState.Created ? $"started eip=0x{partition.VirtualProcessors[0].Core.Eip:x8}" : "resumed");
            if (partition.Statistics.StartTicks == PartitionStatistics.NotStarted)
            {
                partition.Statistics.StartTicks = _kernel.Now(partition);
            }

            partition.State = PartitionState.Running;
            _kernel.Scheduler.Wake();
        }
    }

    public void Pause(Partition partition)
    {
        if (partition.State == PartitionState.Running)
        {
            partition.State = PartitionState.Paused;
            _kernel.Trace.Record(_kernel.Now(partition), partition.Id, -1, TraceKind.Lifecycle, "paused");
        }
    }

    public void Stop(Partition partition) =>
        _kernel.StopPartition(partition, new PartitionExit(StopReason.StoppedByRoot, 0, null));

    /// <summary>Stops (if needed) and deletes the partition, returning its frames to the kernel.</summary>
    public void Delete(Partition partition)
    {
        Stop(partition);
        _kernel.Remove(partition);
    }

    /// <summary>
    /// Rapid provisioning: a new partition that shares <paramref name="template"/>'s RAM copy-on-write through
    /// the second-level translation and starts from a copy of its vCPU state. The template should be paused.
    /// </summary>
    public Partition ClonePartition(Partition template, string name)
    {
        Partition clone = _kernel.CloneChild(template, name);
        _kernel.Trace.Record(_kernel.Now(template), clone.Id, -1, TraceKind.Lifecycle,
            $"cloned from {template.Name} memory={clone.AddressSpace!.SizeBytes / 1024}KiB shared-pages={clone.AddressSpace.SharedPages}");
        return clone;
    }

    /// <summary>Pauses the partition once its boot vCPU has retired <paramref name="instructions"/> instructions in total.</summary>
    public void PauseAtInstruction(Partition partition, long instructions) => partition.BreakAtInstruction = instructions;

    public Hardware.Cpu.CpuState GetVpState(Partition partition, int vpIndex = 0) =>
        partition.VirtualProcessors[vpIndex].Core.SaveState();

    public void SetVpState(Partition partition, in Hardware.Cpu.CpuState state, int vpIndex = 0) =>
        partition.VirtualProcessors[vpIndex].Core.RestoreState(state);

    /// <summary>Restores the counters of a partition brought back from a snapshot or a migration stream.</summary>
    public void RestoreStatistics(Partition partition, long virtualTicks, long channelMessages, IEnumerable<KeyValuePair<string, long>> intercepts)
    {
        partition.Statistics.StartTicks = _kernel.Clock.Ticks - virtualTicks;
        partition.Statistics.ChannelMessages = channelMessages;
        partition.Statistics.InstructionsRetired = partition.VirtualProcessors[0].Core.InstructionsRetired;
        foreach ((string kind, long count) in intercepts)
        {
            partition.Statistics.SetIntercepts(kind, count);
        }
    }

    /// <summary>Virtual ticks since the partition started (its share of the machine's virtual time).</summary>
    public long VirtualTicks(Partition partition) => partition.Statistics.VirtualTicks(_kernel.Clock.Ticks);

    /// <summary>Live migration: write-protect all RAM and log the pages the guest writes from now on.</summary>
    public void StartDirtyTracking(Partition partition) => partition.AddressSpace!.StartDirtyTracking();

    public List<uint> CollectDirtyPages(Partition partition) => partition.AddressSpace!.CollectDirtyPages();

    public void StopDirtyTracking(Partition partition) => partition.AddressSpace!.StopDirtyTracking();

    /// <summary>
    /// Type 1 configuration: moves a partition's device model into the kernel, which then serves that
    /// partition's intercepts itself, synchronously, with no message to the root.
    /// </summary>
    public void InstallInKernelDevices(Partition partition, Func<InterceptMessage, InterceptReply> deviceModel)
    {
        if (_kernel.Options.Hosting != Scheduling.DeviceHosting.Type1)
        {
            throw new InvalidOperationException("device models run in the kernel only in the Type 1 configuration");
        }

        _kernel.InKernelDevices[partition.Id] = deviceModel;
    }

    /// <summary>Completes an intercept; the vCPU resumes at the scheduler's next round barrier.</summary>
    public ValueTask CompleteInterceptAsync(InterceptReply reply, CancellationToken cancellationToken = default) =>
        _kernel.ReplyPort.SendAsync(reply, cancellationToken);
}
