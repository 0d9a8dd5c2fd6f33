using HybridVmm.Cluster.Grains;
using HybridVmm.Cluster.Placement;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using StackExchange.Redis;
using Orleans;
using Orleans.Hosting;

namespace HybridVmm.Cluster.Hosting;

/// <summary>Makes a serve process's generic host a silo of the cluster, with Redis membership and Redis grain storage.</summary>
public static class ClusterSilo
{
    public const string ClusterId = "hybridvmm";
    public const string ServiceId = "hybridvmm";

    public static void AddClusterHost(this IHostApplicationBuilder builder, ClusterHostOptions options)
    {
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<LocalVms>();
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = ClusterId;
                o.ServiceId = ServiceId;
            });
            silo.Configure<SiloOptions>(o => o.SiloName = options.Name);
            silo.UseRedisClustering(o => o.ConfigurationOptions = RedisOptions(options.Redis));
            silo.AddRedisGrainStorage(ClusterStorage.Name, o => o.ConfigurationOptions = RedisOptions(options.Redis));
            silo.AddRedisGrainDirectory(ClusterStorage.Name, o => o.ConfigurationOptions = RedisOptions(options.Redis));
            silo.ConfigureEndpoints(options.Address, options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: false);
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                // A host is declared dead after MissedProbes probes of ProbeTimeout each go unanswered (docs/cluster.md).
                o.ProbeTimeout = options.ProbeTimeout;
                o.NumMissedProbesLimit = options.MissedProbes;
                o.TableRefreshTimeout = options.ProbeTimeout;
                o.IAmAliveTablePublishTimeout = options.ProbeTimeout * 2;
            });
            silo.AddPlacementDirector<HostPlacement, HostPlacementDirector>();
        });
        DeclaredDeadFence.Install(builder.Services);
        builder.Services.AddSingleton<ControlStoreWatch>();
        builder.Services.AddHostedService(services => services.GetRequiredService<ControlStoreWatch>());
        builder.Services.AddHostedService<ProtectedVmWatch>();
        builder.Services.AddHostedService<MembershipWatch>();
        builder.Services.AddHostedService<BalanceWatch>();
    }

    /// <summary>A connection string in StackExchange.Redis syntax; a Redis that is down is retried, not fatal.</summary>
    public static ConfigurationOptions RedisOptions(string connection)
    {
        ConfigurationOptions redis = ConfigurationOptions.Parse(connection);
        redis.AbortOnConnectFail = false;
        return redis;
    }
}
