using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace HybridVmm.Cluster.Hosting;

/// <summary>
/// Asks the control store (Redis) every <see cref="ClusterHostOptions.WatchPeriod"/> whether it answers, and says so
/// once when it stops answering (<c>cluster degraded</c>) and once when it answers again (<c>cluster recovered</c>).
/// While it is down no host can be declared dead, no epoch can move and no VM can be placed, so the VMs whose grains
/// still take their hosts' reports run on; checkpoints wait (docs/cluster.md, "When Redis is down").
/// </summary>
public sealed class ControlStoreWatch(ClusterHostOptions options, ILogger<ControlStoreWatch> logger) : BackgroundService
{
    private volatile bool _degraded;

    /// <summary>The control store did not answer the last ping.</summary>
    public bool Degraded => _degraded;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        ConfigurationOptions redis = ClusterSilo.RedisOptions(options.Redis);
        // A ping takes a millisecond; one that takes half a second (or a lease, if that is shorter) is no answer.
        TimeSpan limit = TimeSpan.FromTicks(Math.Min(TimeSpan.FromMilliseconds(500).Ticks, options.Lease.Ticks));
        redis.ConnectTimeout = (int)limit.TotalMilliseconds;
        using ConnectionMultiplexer connection = await ConnectionMultiplexer.ConnectAsync(redis).ConfigureAwait(false);
        DateTime downSince = default;
        using var timer = new PeriodicTimer(options.WatchPeriod);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            string? failure = null;
            try
            {
                await connection.GetDatabase().PingAsync().WaitAsync(limit, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                failure = e is TimeoutException ? $"no answer within {limit.TotalSeconds:0.##} s" : e.Message;
            }

            if (failure is not null && !_degraded)
            {
                _degraded = true;
                downSince = DateTime.UtcNow;
                logger.LogWarning("cluster degraded: the control store (Redis at {Redis}) does not answer: {Reason}. VMs run on while their grains take " +
                    "this host's reports; no host can be declared dead and no VM placed, restarted or checkpointed until it answers", options.Redis, failure);
            }
            else if (failure is null && _degraded)
            {
                _degraded = false;
                logger.LogInformation("cluster recovered: the control store (Redis at {Redis}) answers again after {Seconds:0.0} s", options.Redis,
                    (DateTime.UtcNow - downSince).TotalSeconds);
            }
        }
    }
}
