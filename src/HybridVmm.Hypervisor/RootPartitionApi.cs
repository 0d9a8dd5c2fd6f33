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
            if (partition.State == PartitionState.Created)
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

    /// <summary>Completes an intercept; the vCPU resumes at the scheduler's next round barrier.</summary>
    public ValueTask CompleteInterceptAsync(InterceptReply reply, CancellationToken cancellationToken = default) =>
        _kernel.ReplyPort.SendAsync(reply, cancellationToken);
}
