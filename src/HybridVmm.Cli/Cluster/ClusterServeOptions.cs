using System.CommandLine;
using System.Net;
using HybridVmm.Cli.Common;
using HybridVmm.Cluster.Hosting;
using HybridVmm.Cluster.Placement;

namespace HybridVmm.Cli.Cluster;

/// <summary><c>serve --cluster CONNECTION</c> and the options that say how the host joins (docs/cluster.md).</summary>
internal sealed class ClusterServeOptions
{
    public Option<string?> Cluster { get; } = new("--cluster") { Description = "Join the cluster whose membership is in this Redis (host:port[,options])" };

    public Option<string?> Address { get; } = new("--cluster-address") { Description = "The IP address this host binds and advertises to the cluster (default 127.0.0.1)" };

    public Option<int?> SiloPort { get; } = new("--silo-port") { Description = $"The port hosts talk to each other on (default {ClusterHostOptions.DefaultSiloPort})" };

    public Option<int?> GatewayPort { get; } = new("--gateway-port") { Description = $"The port cluster clients connect to (default {ClusterHostOptions.DefaultGatewayPort})" };

    public Option<string?> HostName { get; } = new("--host-name") { Description = "This host's name in the cluster (default MACHINE:SILOPORT)" };

    public Option<string?> CheckpointDirectory { get; } = new("--checkpoint-dir") { Description = "The shared directory protected VMs are checkpointed into (default ./checkpoints)" };

    public Option<string?> Placement { get; } = new("--placement") { Description = "Where new VMs go: least-loaded (default) or pack" };

    public Option<double?> ProbeTimeout { get; } = new("--probe-timeout") { Description = "Seconds a host has to answer a liveness probe (default 5)" };

    public Option<int?> MissedProbes { get; } = new("--missed-probes") { Description = "Missed probes after which a host is declared dead (default 3)" };

    public Option<double?> BalanceEvery { get; } = new("--balance-every") { Description = "Seconds between two looks of the load balancer at the hosts (default 30; 0: off)" };

    public Option<int?> BalanceThreshold { get; } = new("--balance-threshold")
    {
        Description = $"How many percentage points of load (vCPUs or memory against capacity) the busiest host must be above the idlest before the balancer moves a VM (default {ClusterHostOptions.DefaultBalanceThreshold})",
    };

    public Option<int?> HostVcpus { get; } = new("--host-vcpus")
    {
        Description = $"The vCPUs this host offers the cluster's VMs, 1 to {MaxHostVcpus} (default: this machine's processors, {Environment.ProcessorCount})",
    };

    /// <summary>The most vCPUs a host may offer.</summary>
    public const int MaxHostVcpus = 4096;

    public IEnumerable<Option> All =>
        [Cluster, Address, SiloPort, GatewayPort, HostName, CheckpointDirectory, Placement, ProbeTimeout, MissedProbes, BalanceEvery, BalanceThreshold, HostVcpus];

    /// <summary>The cluster options, or null without --cluster; a refusal is one message and status 64.</summary>
    public bool TryRead(ParseResult result, TextWriter stderr, out ClusterHostOptions? options, out int status)
    {
        options = null;
        status = ExitStatus.Usage;
        string? redis = result.GetValue(Cluster);
        if (redis is null)
        {
            Option? stray = All.Skip(1).FirstOrDefault(o => result.GetResult(o) is not null);
            if (stray is not null)
            {
                stderr.WriteLine($"hybridvmm: error: {stray.Name} goes with --cluster CONNECTION");
                return false;
            }

            return true;
        }

        if (string.IsNullOrWhiteSpace(redis))
        {
            stderr.WriteLine("hybridvmm: error: --cluster needs the Redis connection string, e.g. 127.0.0.1:6379");
            return false;
        }

        try
        {
            _ = ClusterSilo.RedisOptions(redis);
        }
        catch (ArgumentException e)
        {
            stderr.WriteLine($"hybridvmm: error: --cluster '{redis}' is not a Redis connection string: {e.Message}");
            return false;
        }

        IPAddress address = IPAddress.Loopback;
        if (result.GetValue(Address) is { } text && !IPAddress.TryParse(text, out address!))
        {
            stderr.WriteLine($"hybridvmm: error: --cluster-address '{text}' is not an IP address");
            return false;
        }

        int siloPort = result.GetValue(SiloPort) ?? ClusterHostOptions.DefaultSiloPort;
        int gatewayPort = result.GetValue(GatewayPort) ?? ClusterHostOptions.DefaultGatewayPort;
        if (siloPort is < 1 or > 65535 || gatewayPort is < 1 or > 65535 || siloPort == gatewayPort)
        {
            stderr.WriteLine($"hybridvmm: error: --silo-port {siloPort} and --gateway-port {gatewayPort} must be two different ports from 1 to 65535");
            return false;
        }

        string placement = result.GetValue(Placement) ?? "least-loaded";
        if (!PlacementPolicy.Names.Contains(placement))
        {
            stderr.WriteLine($"hybridvmm: error: --placement '{placement}' is not a placement policy (have: {string.Join(", ", PlacementPolicy.Names)})");
            return false;
        }

        double probe = result.GetValue(ProbeTimeout) ?? 5;
        int missed = result.GetValue(MissedProbes) ?? 3;
        if (probe is < 0.1 or > 600 || missed is < 1 or > 100)
        {
            stderr.WriteLine("hybridvmm: error: --probe-timeout takes 0.1 to 600 seconds and --missed-probes 1 to 100");
            return false;
        }

        double balanceEvery = result.GetValue(BalanceEvery) ?? 30;
        int balanceThreshold = result.GetValue(BalanceThreshold) ?? ClusterHostOptions.DefaultBalanceThreshold;
        if (balanceEvery is < 0 or > 86_400 || (balanceEvery > 0 && balanceEvery < 0.1) || balanceThreshold is < 1 or > 1000)
        {
            stderr.WriteLine("hybridvmm: error: --balance-every takes 0 (off) or 0.1 to 86400 seconds, and --balance-threshold 1 to 1000 percentage points of load");
            return false;
        }

        int hostVcpus = result.GetValue(HostVcpus) ?? Environment.ProcessorCount;
        if (hostVcpus is < 1 or > MaxHostVcpus)
        {
            stderr.WriteLine($"hybridvmm: error: --host-vcpus must be 1 to {MaxHostVcpus}, not {hostVcpus}");
            return false;
        }

        string directory = Path.GetFullPath(result.GetValue(CheckpointDirectory) ?? "checkpoints");
        try
        {
            Directory.CreateDirectory(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"hybridvmm: error: cannot use checkpoint directory '{directory}': {e.Message}");
            status = ExitStatus.CannotWrite;
            return false;
        }

        options = new ClusterHostOptions
        {
            Redis = redis,
            Address = address,
            SiloPort = siloPort,
            GatewayPort = gatewayPort,
            Name = result.GetValue(HostName) ?? $"{Environment.MachineName}:{siloPort}",
            CheckpointDirectory = directory,
            Placement = placement,
            ProbeTimeout = TimeSpan.FromSeconds(probe),
            MissedProbes = missed,
            BalanceEvery = TimeSpan.FromSeconds(balanceEvery),
            BalanceThreshold = balanceThreshold,
            HostVcpus = hostVcpus,
        };
        status = ExitStatus.Success;
        return true;
    }
}
