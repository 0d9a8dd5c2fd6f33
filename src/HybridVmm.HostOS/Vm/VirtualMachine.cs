using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Worker;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.Vm;

/// <summary>A guest as VM management sees it: the handle of its partition, its worker and how it ended.</summary>
public sealed class VirtualMachine
{
    private readonly RootPartitionApi _api;

    internal VirtualMachine(VmConfiguration configuration, PartitionHandle partition, VmWorker worker, Uart16550 com1, RootPartitionApi api)
    {
        Configuration = configuration;
        Partition = partition;
        Worker = worker;
        Com1 = com1;
        _api = api;
        Exited = api.Exited(partition);
        // The counters outlive the partition: a deleted VM still reports what it did.
        Statistics = api.Statistics(partition);
    }

    public string Name => Configuration.Name;

    public VmConfiguration Configuration { get; }

    /// <summary>The kernel's name for the guest's partition.</summary>
    public PartitionHandle Partition { get; }

    public VmWorker Worker { get; }

    public Uart16550 Com1 { get; }

    /// <summary>The VMBus channels offered to this guest (its synthetic devices).</summary>
    public IReadOnlyList<VmBus.VmBusChannel> Channels { get; internal set; } = Array.Empty<VmBus.VmBusChannel>();

    /// <summary>The partition's counters, as the kernel keeps them.</summary>
    public PartitionStatistics Statistics { get; }

    public PartitionState State => _api.State(Partition);

    public Task<PartitionExit> Exited { get; }
}
