namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// How the root partition names a partition: its ID, as Hyper-V's root names partitions in hypercalls. The root
/// never holds a kernel object; every operation on a partition goes through <see cref="RootPartitionApi"/> with
/// a handle.
/// </summary>
public readonly record struct PartitionHandle(int Id)
{
    public override string ToString() => $"partition {Id}";
}

/// <summary>
/// What the root's management sees of one partition (<see cref="RootPartitionApi.Partitions"/>): its handle and
/// name, whether it is the root, its run state, its RAM, each vCPU's state, and its counters.
/// </summary>
public sealed record PartitionSummary(
    PartitionHandle Handle,
    string Name,
    bool IsRoot,
    PartitionState State,
    ulong MemoryBytes,
    IReadOnlyList<VpState> Processors,
    PartitionStatistics Statistics);
