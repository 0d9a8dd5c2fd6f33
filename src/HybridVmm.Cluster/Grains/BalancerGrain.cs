using HybridVmm.Cluster.Hosting;
using HybridVmm.Cluster.Placement;
using Microsoft.Extensions.Logging;
using Orleans.GrainDirectory;
using Orleans;

namespace HybridVmm.Cluster.Grains;

/// <summary>The cluster's load balancer (one grain, key "all"): live-migrates VMs off overloaded hosts.</summary>
public interface IBalancerGrain : IGrainWithStringKey
{
    /// <summary>One look at the cluster's load; at most one migration begins. Returns what it did, for the log.</summary>
    Task<string?> BalanceAsync();
}

/// <summary>
/// Every host asks it to look, every <see cref="ClusterHostOptions.BalanceEvery"/>; not reentrant, so looks are one
/// after another, and a look within half a period of the last one does nothing (so N hosts do not make N looks). A
/// look compares the hosts that take migrations by their load (<see cref="HostLoad"/>: the larger of the share of the
/// vCPUs they offer that their active VMs hold, and of their memory in use). When the most loaded is at least
/// <see cref="ClusterHostOptions.BalanceThreshold"/> percentage points above the least, one running cluster VM of the
/// most loaded host migrates to the least loaded, as Hyper-V's VM load balancing moves one VM at a time: the VM whose
/// move leaves the higher of the two hosts' loads lowest, and only if that is lower than the busiest host's load now,
/// so that a move never merely swaps the imbalance. While a migration it began is still in progress, it begins no other.
/// </summary>
[GrainDirectory(GrainDirectoryName = ClusterStorage.Name)]
public sealed class BalancerGrain(ClusterHostOptions options, ILogger<BalancerGrain> logger) : Grain, IBalancerGrain
{
    public const string Key = "all";

    private DateTime _lastLook = DateTime.MinValue;
    private string? _moving;

    public async Task<string?> BalanceAsync()
    {
        DateTime now = DateTime.UtcNow;
        if (now - _lastLook < options.BalanceEvery / 2)
        {
            return null;
        }

        _lastLook = now;
        if (_moving is not null && (await GrainFactory.GetGrain<IVmGrain>(_moving).GetAsync()).Value?.LastMigration is { InProgress: true })
        {
            return null;
        }

        _moving = null;
        HostStatus[] hosts = (await ClusterHosts.StatusAsync(GrainFactory)).Where(h => h.MigrationEndpoint is not null).ToArray();
        if (LoadBalancing.Moves(hosts, options.BalanceThreshold) is not (HostStatus busiest, HostStatus idlest, HostVm[] candidates))
        {
            return null;
        }

        foreach (HostVm candidate in candidates)
        {
            IVmGrain vm = GrainFactory.GetGrain<IVmGrain>(candidate.Name);
            ClusterVm? record = (await vm.GetAsync()).Value;
            if (record is null || record.Host != busiest.Address || record.State != "running" || record.LastMigration is { InProgress: true })
            {
                continue; // not a cluster VM (the host's own), or not one this look may move
            }

            string reason = $"balancer: {LoadBalancing.Describe(busiest)}, {LoadBalancing.Describe(idlest)}";
            ClusterResult<ClusterVm> started = await vm.MigrateAsync(idlest.Name, reason);
            if (started.Problem is { } problem)
            {
                logger.LogInformation("Balancer: {Vm} could not move to {Host}: {Detail}", candidate.Name, idlest.Name, problem.Detail);
                continue;
            }

            _moving = candidate.Name;
            logger.LogInformation("Balancer: moving {Vm} from {From} to {To} ({Reason})", candidate.Name, busiest.Name, idlest.Name, reason);
            return $"moving {candidate.Name} from {busiest.Name} to {idlest.Name}";
        }

        return null;
    }
}
