using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Worker;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.Management;

/// <summary>A guest as VM management sees it: its partition, its worker and how it ended.</summary>
public sealed class VirtualMachine
{
    internal VirtualMachine(VmConfiguration configuration, Partition partition, VmWorker worker, Uart16550 com1)
    {
        Configuration = configuration;
        Partition = partition;
        Worker = worker;
        Com1 = com1;
    }

    public string Name => Configuration.Name;

    public VmConfiguration Configuration { get; }

    public Partition Partition { get; }

    public VmWorker Worker { get; }

    public Uart16550 Com1 { get; }

    /// <summary>The VMBus channels offered to this guest (its synthetic devices).</summary>
    public IReadOnlyList<VmBus.VmBusChannel> Channels { get; internal set; } = Array.Empty<VmBus.VmBusChannel>();

    public PartitionState State => Partition.State;

    public Task<PartitionExit> Exited => Partition.Exited;
}
