using HybridVmm.Cluster.Grains;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans;

namespace HybridVmm.Cluster.Hosting;

/// <summary>
/// Follows Orleans membership and, when a host is declared dead, tells the VM directory, which restarts that host's
/// protected VMs on the survivors. Every surviving host does this; the VM grains make it idempotent (a VM already
/// moved is no longer placed on the dead host).
/// </summary>
public sealed class MembershipWatch(IClusterMembershipService membership, IGrainFactory grains, ILocalSiloDetails silo, ILogger<MembershipWatch> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var dead = new HashSet<SiloAddress>();
        bool first = true;
        try
        {
            await foreach (ClusterMembershipSnapshot snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                foreach ((SiloAddress address, ClusterMember member) in snapshot.Members)
                {
                    if (member.Status != SiloStatus.Dead || !dead.Add(address) || first || address.Equals(silo.SiloAddress))
                    {
                        continue;
                    }

                    // Hosts that died before this one joined were handled by the hosts that saw it happen.
                    DateTime detectedAt = DateTime.UtcNow;
                    logger.LogWarning("host {Name} ({Address}) was declared dead; restarting its protected VMs", member.Name, address);
                    _ = FailOverAsync(address.ToParsableString(), detectedAt);
                }

                first = false;
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task FailOverAsync(string address, DateTime detectedAt)
    {
        try
        {
            await grains.GetGrain<IVmDirectoryGrain>(VmDirectoryGrain.Key).HostDiedAsync(address, detectedAt);
        }
        catch (Exception e)
        {
            logger.LogWarning("failover after the death of {Address} did not complete: {Reason}", address, e.Message);
        }
    }
}
