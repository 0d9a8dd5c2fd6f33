using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using HybridVmm.Cli.Common;
using HybridVmm.Cluster;
using HybridVmm.Cluster.Grains;
using Orleans;

namespace HybridVmm.Cli.Cluster;

/// <summary>
/// The cluster's client commands: <c>hybridvmm cluster status</c>, and <c>hybridvmm vm create|start|stop|list --cluster</c>.
/// Each connects to the cluster as an Orleans client (through the gateways listed in Redis) and talks to the VM grains.
/// Exit statuses as for <c>vm</c>: 69 the cluster cannot be reached, 76 it refused the request.
/// </summary>
internal static class ClusterCommands
{
    /// <summary>How long the client may take to reach a gateway of the cluster.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(30);

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static Command Create()
    {
        var cluster = new Option<string>("--cluster") { Description = "The cluster's Redis (host:port[,options])", Required = true, Recursive = true };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables", Recursive = true };
        var command = new Command("cluster", "The cluster of hybrid hosts (serve --cluster)") { cluster, json };
        var status = new Command("status", "The hosts (capacity, load, VMs) and the cluster's VMs");
        status.SetAction((r, ct) => StatusAsync(r.GetValue(cluster)!, r.GetValue(json), ct));
        command.Subcommands.Add(status);
        return command;
    }

    public static Task<int> StatusAsync(string redis, bool json, CancellationToken cancellationToken) => WithClusterAsync(redis, async client =>
    {
        HostStatus[] hosts = await Delivered(() => ClusterHosts.StatusAsync(client), idempotent: true, cancellationToken);
        ClusterVm[] vms = await Delivered(() => ListVmsAsync(client), idempotent: true, cancellationToken);
        Console.Out.Write(json ? JsonSerializer.Serialize(new { hosts, vms }, Json) + "\n" : HostTable(hosts) + "\n" + VmTable(vms));
        return ExitStatus.Success;
    }, cancellationToken);

    public static Task<int> CreateAsync(string redis, VmSpec spec, bool start, string? onHost, bool json, CancellationToken cancellationToken) =>
        WithClusterAsync(redis, async client =>
            Report(await Delivered(() => client.GetGrain<IVmGrain>(spec.Name).CreateAsync(spec, start, onHost), idempotent: false, cancellationToken), json),
            cancellationToken);

    /// <summary>How long <c>vm migrate --cluster</c> waits for the migration it started to end.</summary>
    public static readonly TimeSpan MigrationWait = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Starts a live migration through the VM's grain, then follows it (the grain's record, four times a second) until
    /// it ends: 0 when the VM runs on the target, 69 when it failed and runs on at its source.
    /// </summary>
    public static Task<int> MigrateAsync(string redis, string name, string? toHost, bool json, CancellationToken cancellationToken) =>
        WithClusterAsync(redis, async client =>
        {
            IVmGrain grain = client.GetGrain<IVmGrain>(name);
            ClusterResult<ClusterVm> started = await Delivered(() => grain.MigrateAsync(toHost, "asked by vm migrate"), idempotent: false, cancellationToken);
            if (started.Problem is not null)
            {
                return Report(started, json);
            }

            DateTime deadline = DateTime.UtcNow + MigrationWait;
            MigrationInfo begun = started.Value!.LastMigration!;
            while (true)
            {
                await Task.Delay(250, cancellationToken);
                ClusterResult<ClusterVm> now = await Delivered(grain.GetAsync, idempotent: true, cancellationToken);
                if (now.Value?.LastMigration is { InProgress: false } ended && ended.StartedAt == begun.StartedAt)
                {
                    if (json)
                    {
                        Console.Out.WriteLine(JsonSerializer.Serialize(now.Value, Json));
                    }
                    else if (ended.Succeeded)
                    {
                        MigrationOutcome o = ended.Outcome!;
                        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"{name}: migrated from {ended.From} to {ended.To} (epoch {ended.Epoch}) at instruction {o.Instructions:N0}: " +
                            $"{o.PagesPerRound.Length} pre-copy round{(o.PagesPerRound.Length == 1 ? "" : "s")}, {o.FinalPages:N0} pages in the final copy, " +
                            $"{o.DowntimeMilliseconds:0.0} ms down"));
                    }

                    if (!ended.Succeeded)
                    {
                        Console.Error.WriteLine($"hybridvmm: error: '{name}' was not migrated to {ended.To}: {ended.Failure}");
                    }

                    return ended.Succeeded ? ExitStatus.Success : ExitStatus.Unavailable;
                }

                if (DateTime.UtcNow > deadline)
                {
                    Console.Error.WriteLine($"hybridvmm: error: the migration of '{name}' to {begun.To} did not end within {MigrationWait.TotalMinutes:0} minutes; see vm show {name} --cluster");
                    return ExitStatus.Unavailable;
                }
            }
        }, cancellationToken);

    public static Task<int> StartAsync(string redis, string name, bool json, CancellationToken cancellationToken) =>
        WithClusterAsync(redis, async client =>
            Report(await Delivered(client.GetGrain<IVmGrain>(name).StartAsync, idempotent: false, cancellationToken), json), cancellationToken);

    public static Task<int> StopAsync(string redis, string name, bool json, CancellationToken cancellationToken) =>
        WithClusterAsync(redis, async client =>
            Report(await Delivered(client.GetGrain<IVmGrain>(name).StopAsync, idempotent: false, cancellationToken), json), cancellationToken);

    public static Task<int> ShowAsync(string redis, string name, bool json, CancellationToken cancellationToken) =>
        WithClusterAsync(redis, async client =>
            Report(await Delivered(client.GetGrain<IVmGrain>(name).GetAsync, idempotent: true, cancellationToken), json, detailed: true), cancellationToken);

    private static async Task<ClusterVm[]> ListVmsAsync(IClusterClient client)
    {
        string[] names = await client.GetGrain<IVmDirectoryGrain>(VmDirectoryGrain.Key).ListAsync();
        ClusterResult<ClusterVm>[] all = await Task.WhenAll(names.Select(n => client.GetGrain<IVmGrain>(n).GetAsync()));
        return all.Where(r => r.Value is not null).Select(r => r.Value!).ToArray();
    }

    /// <summary>How long a call may be retried while the silo that holds its grain cannot be reached.</summary>
    public static readonly TimeSpan RetryWindow = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Makes a grain call, and makes it again while the silo holding the grain cannot be reached: a host that has just
    /// died keeps its grains until the membership declares it dead (seconds), and then they activate on a survivor.
    /// A call that never left (no connection) is always made again; one that may have run before its silo went away
    /// only when it is a read (<paramref name="idempotent"/>). After <see cref="RetryWindow"/> the failure stands.
    /// </summary>
    private static async Task<T> Delivered<T>(Func<Task<T>> call, bool idempotent, CancellationToken cancellationToken)
    {
        DateTime deadline = DateTime.UtcNow + RetryWindow;
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception e) when (DateTime.UtcNow < deadline && ClusterFailure.IsUnreachableSilo(e, idempotent))
            {
                await Task.Delay(500, cancellationToken);
            }
        }
    }

    private static int Report(ClusterResult<ClusterVm> result, bool json, bool detailed = false)
    {
        if (result.Problem is { } problem)
        {
            Console.Error.WriteLine($"hybridvmm: error: {problem.Detail}");
            return problem.Status >= 500 ? ExitStatus.Unavailable : ExitStatus.ApiRefused;
        }

        ClusterVm vm = result.Value!;
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(vm, Json));
        }
        else if (detailed)
        {
            Console.Out.Write(VmTable([vm]));
            foreach (VmEvent e in vm.History)
            {
                Console.Out.WriteLine($"  {e.At:yyyy-MM-dd HH:mm:ss.f}  {e.What}");
            }
        }
        else
        {
            Console.Out.WriteLine($"{vm.Name}: {vm.State} on {vm.HostName ?? "no host"} (epoch {vm.Epoch})");
        }

        return ExitStatus.Success;
    }

    private static async Task<int> WithClusterAsync(string redis, Func<IClusterClient, Task<int>> run, CancellationToken cancellationToken)
    {
        ClusterConnection connection;
        using (var connecting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            connecting.CancelAfter(ConnectTimeout);
            try
            {
                connection = await ClusterConnection.ConnectAsync(redis, connecting.Token);
            }
            catch (Exception e) when (e is OperationCanceledException || ClusterFailure.IsJoinFailure(e) || e is ArgumentException)
            {
                string why = e is OperationCanceledException ? $"no host answered within {ConnectTimeout.TotalSeconds:0} s" : ClusterFailure.Describe(e);
                Console.Error.WriteLine($"hybridvmm: error: cannot reach the cluster at '{redis}': {why} (is a 'hybridvmm serve --cluster' running?)");
                return ExitStatus.Unavailable;
            }
        }

        await using (connection)
        {
            try
            {
                return await run(connection.Client);
            }
            catch (Exception e) when (ClusterFailure.IsJoinFailure(e))
            {
                Console.Error.WriteLine($"hybridvmm: error: the cluster at '{redis}' did not answer: {ClusterFailure.Describe(e)}");
                return ExitStatus.Unavailable;
            }
        }
    }

    public static string HostTable(IReadOnlyList<HostStatus> hosts)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{"HOST",-16} {"ADDRESS",-28} {"VCPUS USED",10} {"MEMORY USED",16} {"LOAD",5} {"VMS",4} {"ACTIVE",6}");
        foreach (HostStatus h in hosts)
        {
            // The load is the larger of the vCPU and memory shares (docs/cluster.md#load).
            string vcpus = $"{h.ActiveVcpus}/{h.Capacity.Vcpus}";
            string memory = $"{h.MemoryUsedBytes >> 20}/{h.Capacity.MemoryBytes >> 20} MiB";
            string load = string.Create(CultureInfo.InvariantCulture, $"{h.LoadPercent:0}%");
            text.AppendLine(CultureInfo.InvariantCulture, $"{h.Name,-16} {h.Address,-28} {vcpus,10} {memory,16} {load,5} {h.Vms.Length,4} {h.ActiveVms,6}");
        }

        return text.ToString();
    }

    public static string VmTable(IReadOnlyList<ClusterVm> vms)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"{"VM",-16} {"HOST",-16} {"STATE",-10} {"VCPUS",5} {"INSTRUCTIONS",14} {"UPTIME",8} {"EPOCH",5} {"HA",3} {"CHECKPOINT",14}");
        foreach (ClusterVm v in vms)
        {
            string uptime = v.StartedAt is { } at && v.State == "running" ? $"{(DateTime.UtcNow - at).TotalSeconds:0}s" : "-";
            string checkpoint = v.LastCheckpoint is { } c ? c.Instructions.ToString(CultureInfo.InvariantCulture) : "-";
            text.AppendLine(CultureInfo.InvariantCulture,
                $"{v.Name,-16} {v.HostName ?? "-",-16} {v.State,-10} {v.Vcpus,5} {v.Instructions,14} {uptime,8} {v.Epoch,5} {(v.Protected ? "yes" : "no"),3} {checkpoint,14}");
        }

        return text.ToString();
    }
}
