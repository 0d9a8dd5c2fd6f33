using Orleans.Concurrency;
using Orleans.GrainDirectory;
using Orleans.Runtime;
using Orleans;

namespace HybridVmm.Cluster.Grains;

[GenerateSerializer]
public sealed class VmDirectoryRecord
{
    [Id(0)] public SortedSet<string> Names { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>
/// Reentrant: a host's death fans out to the VM grains while new VMs may still register (a VM grain's create calls
/// back here), and neither may wait for the other.
/// </summary>
[Reentrant, GrainDirectory(GrainDirectoryName = ClusterStorage.Name)]
public sealed class VmDirectoryGrain([PersistentState("directory", ClusterStorage.Name)] IPersistentState<VmDirectoryRecord> record)
    : Grain, IVmDirectoryGrain
{
    public const string Key = "all";

    public async Task AddAsync(string name)
    {
        if (record.State.Names.Add(name))
        {
            await record.WriteStateAsync();
        }
    }

    public Task<string[]> ListAsync() => Task.FromResult(record.State.Names.ToArray());

    public async Task HostDiedAsync(string host, DateTime detectedAt)
    {
        // One VM after another would make the last wait for all the others' restarts: they go at once.
        await Task.WhenAll(record.State.Names.ToArray().Select(name => GrainFactory.GetGrain<IVmGrain>(name).HostDiedAsync(host, detectedAt)));
    }
}

/// <summary>
/// The name of the Redis grain storage that holds VM records, and of the Redis grain directory that says where each
/// VM grain is active: in Redis, not in the hosts' memory, so that the death of a host loses no directory entries
/// of the VM grains that must act on that death.
/// </summary>
public static class ClusterStorage
{
    public const string Name = "hybridvmm";
}
