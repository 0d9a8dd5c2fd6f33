using Orleans.Runtime;
using Orleans;

namespace HybridVmm.Cluster.Grains;

/// <summary>The active hosts of the cluster, from Orleans membership, each with its load.</summary>
public static class ClusterHosts
{
    /// <summary>How long a host may take to say how loaded it is; one that does not answer is left out.</summary>
    public static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(5);

    public static async Task<HostStatus[]> StatusAsync(IGrainFactory grains, string? exclude = null)
    {
        Dictionary<SiloAddress, SiloStatus> silos = await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
        IEnumerable<Task<HostStatus?>> asks = silos.Keys
            .Select(s => s.ToParsableString())
            .Where(a => a != exclude)
            .Select(async address =>
            {
                try
                {
                    return await grains.GetGrain<IHostGrain>(address).StatusAsync().WaitAsync(StatusTimeout);
                }
                catch (Exception e) when (e is TimeoutException or SiloUnavailableException or OrleansException)
                {
                    return null;
                }
            });
        HostStatus?[] statuses = await Task.WhenAll(asks);
        return statuses.OfType<HostStatus>().OrderBy(h => h.Name, StringComparer.Ordinal).ToArray();
    }
}
