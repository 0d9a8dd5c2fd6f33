using HybridVmm.Cluster.Grains;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans;

namespace HybridVmm.Cluster.Hosting;

/// <summary>Asks the cluster's balancer to look at the load every <see cref="ClusterHostOptions.BalanceEvery"/> (off when zero).</summary>
public sealed class BalanceWatch(IGrainFactory grains, ClusterHostOptions options, ILogger<BalanceWatch> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.BalanceEvery <= TimeSpan.Zero)
        {
            return;
        }

        using var timer = new PeriodicTimer(options.BalanceEvery);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                await grains.GetGrain<IBalancerGrain>(BalancerGrain.Key).BalanceAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning("cluster degraded: the balancer cannot look at the load: {Reason}", e.Message);
            }
        }
    }
}
