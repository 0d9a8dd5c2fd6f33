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
