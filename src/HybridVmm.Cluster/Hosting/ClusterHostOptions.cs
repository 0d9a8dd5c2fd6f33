using System.Net;
using Orleans;

namespace HybridVmm.Cluster.Hosting;

/// <summary>How a serve process joins the cluster (docs/cluster.md lists the defaults).</summary>
public sealed class ClusterHostOptions
{
    public const int DefaultSiloPort = 11111;
    public const int DefaultGatewayPort = 30000;

    /// <summary>The Redis connection string (StackExchange.Redis syntax: host:port[,options]).</summary>
    public required string Redis { get; init; }

    /// <summary>The address other hosts and clients reach this one on; also the address it binds.</summary>
    public IPAddress Address { get; init; } = IPAddress.Loopback;

    public int SiloPort { get; init; } = DefaultSiloPort;

    public int GatewayPort { get; init; } = DefaultGatewayPort;

    /// <summary>The host's name in tables and logs.</summary>
    public required string Name { get; init; }

    /// <summary>The shared directory protected VMs are checkpointed into (every host must see the same files).</summary>
    public required string CheckpointDirectory { get; init; }

    /// <summary>least-loaded (default) or pack.</summary>
    public string Placement { get; init; } = "least-loaded";

    /// <summary>Orleans' probe timeout; a host is declared dead after <see cref="MissedProbes"/> missed probes.</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public int MissedProbes { get; init; } = 3;

    /// <summary>
    /// How long a cluster VM may run without its grain accepting a report: half the shortest time in which the
    /// cluster can declare this host dead, so a host cut off pauses its VMs before they can be restarted elsewhere.
    /// </summary>
    public TimeSpan Lease => ProbeTimeout * MissedProbes / 2;

    /// <summary>How often the balancer looks at the hosts' load (<c>--balance-every</c>); zero: never.</summary>
    public TimeSpan BalanceEvery { get; init; } = TimeSpan.FromSeconds(30);

    public const int DefaultBalanceThreshold = 50;

    /// <summary>
    /// How many percentage points of load (<see cref="Placement.HostLoad"/>) the busiest host must be above the idlest
    /// before one VM moves (<c>--balance-threshold</c>).
    /// </summary>
    public int BalanceThreshold { get; init; } = DefaultBalanceThreshold;

    /// <summary>The vCPUs this host offers the cluster (<c>--host-vcpus</c>): by default the machine's processors.</summary>
    public int HostVcpus { get; init; } = Environment.ProcessorCount;

    /// <summary>How often the host looks at its protected VMs (progress, checkpoints, fencing).</summary>
    public TimeSpan WatchPeriod { get; init; } = TimeSpan.FromMilliseconds(250);
}
