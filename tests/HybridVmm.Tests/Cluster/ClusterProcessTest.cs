using System.Text.Json;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// What the cluster tests with real processes share: a real redis-server and <c>hybridvmm serve --cluster</c> hosts on
/// 127.0.0.1 (short failure detection: --probe-timeout 1 --missed-probes 2), the real CLI, each host's own management
/// API over its Unix socket, and a guest that ticks. Every wait has a deadline; TearDown kills every process started.
/// </summary>
public abstract class ClusterProcessTest
{
    /// <summary>How long the cluster may take to do something asked of it before the test fails.</summary>
    protected static readonly TimeSpan Deadline = TimeSpan.FromMinutes(5);

    /// <summary>Instructions between two ticks of the guest (a loop of DEC and JNZ).</summary>
    protected const int TickInstructions = 2_000_000;

    protected const int CheckpointEvery = 10_000_000;

    /// <summary>The hypervisor's quantum (HypervisorOptions.Quantum): the most a vCPU runs in one round.</summary>
    protected const long Quantum = 100_000;

    protected readonly List<(string Name, ServeProcess Serve)> Hosts = [];
    protected RedisServer? Redis;
    protected string Dir = "";

    protected string Checkpoints => Path.Combine(Dir, "checkpoints");

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(Dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-cluster-{Guid.NewGuid():N}"));

    [TearDown]
    public void StopEverything()
    {
        bool failed = TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed;
        foreach ((string name, ServeProcess serve) in Hosts)
        {
            if (failed)
            {
                // The hosts' own account of what happened: the cluster's log lines.
                TestContext.Out.WriteLine($"--- {name} ---");
                foreach (string line in serve.Stderr.Split('\n').Where(l => l.Contains("HybridVmm", StringComparison.Ordinal)))
                {
                    TestContext.Out.WriteLine(line.Length > 300 ? line[..300] : line);
                }
            }

            serve.Dispose(); // SIGKILL: a stopped (SIGSTOP) process dies as well
        }

        Hosts.Clear();
        Redis?.Dispose();
        Redis = null;
        Directory.Delete(Dir, recursive: true);
    }

    protected ServeProcess Host(string name) => Hosts.Single(h => h.Name == name).Serve;

    /// <summary>A guest that prints "tick A" and on, <paramref name="instructionsPerTick"/> apart (<see cref="TickInstructions"/> by default), <paramref name="ticks"/> times, then exits with 0.</summary>
    protected string TickingGuest(int ticks, int instructionsPerTick = TickInstructions)
    {
        string path = Path.Combine(Dir, $"ticks{ticks}x{instructionsPerTick}.elf");
        File.WriteAllBytes(path, HybridVmm.Samples.Lecture.ClusterLab.TickingGuest(ticks, instructionsPerTick)); // the lecture's own
        return path;
    }

    /// <summary>What <paramref name="guest"/> prints run alone by <c>hybridvmm run</c> (with <paramref name="options"/>): the output a cluster run must equal.</summary>
    protected static string OutputAlone(string guest, params string[] options)
    {
        CliProcess.Result alone = CliProcess.Run(["run", guest, .. options]);
        Assert.That(alone.ExitCode, Is.Zero, alone.Stderr);
        return alone.Text;
    }

    /// <summary>
    /// Starts the hosts (and Redis first, durable in <paramref name="redisData"/> when given), each with its API on
    /// api.sock; a host is declared dead after <paramref name="missedProbes"/> probes of <paramref name="probeTimeout"/>
    /// seconds, and a VM's lease is half that.
    /// </summary>
    /// <param name="extra">More options for every host's serve (a migration listener, the balancer).</param>
    protected void StartCluster(string[] names, string? redisData = null, int probeTimeout = 1, int missedProbes = 2, IReadOnlyList<string>? extra = null)
    {
        Redis = RedisServer.Start(redisData);
        Directory.CreateDirectory(Checkpoints);
        var starting = names.Select(name =>
        {
            string directory = Path.Combine(Dir, name);
            Directory.CreateDirectory(directory);
            string[] args =
            [
                "--api-socket", "api.sock", "--cluster", Redis.Connection, "--host-name", name,
                "--silo-port", RedisServer.FreePort().ToString(), "--gateway-port", RedisServer.FreePort().ToString(),
                "--checkpoint-dir", Checkpoints, "--probe-timeout", probeTimeout.ToString(), "--missed-probes", missedProbes.ToString(),
                .. extra ?? [],
            ];
            return (name, Task.Run(() => ServeProcess.StartIn(directory, args)));
        }).ToArray();
        foreach ((string name, Task<ServeProcess> serve) in starting)
        {
            Hosts.Add((name, serve.Result));
        }
    }

    /// <summary>Runs a cluster command of the CLI with --json; it must succeed.</summary>
    protected JsonElement Cluster(params string[] args)
    {
        CliProcess.Result result = TryCluster(args);
        Assert.That(result.ExitCode, Is.Zero, $"hybridvmm {string.Join(' ', args)}: {result.Stderr}");
        return JsonDocument.Parse(result.Text).RootElement.Clone();
    }

    protected CliProcess.Result TryCluster(params string[] args) =>
        CliProcess.Run([.. args, "--cluster", Redis!.Connection, .. args.Contains("--json") ? Array.Empty<string>() : ["--json"]]);

    protected JsonElement[] Vms() => Cluster("vm", "list").GetProperty("vms").EnumerateArray().ToArray();

    /// <summary>
    /// A guest of two vCPUs (<see cref="Encapsulation.MultiprocessorSnapshotTests.Guest"/>): its boot vCPU starts the other
    /// with INIT and a start-up IPI and prints, <paramref name="lines"/> times, how far the other has counted and its own
    /// time stamp counter, so a vCPU lost, restarted or run out of turn across a move prints other numbers.
    /// </summary>
    protected string TwoVcpuGuest(int lines, int spin)
    {
        string path = Path.Combine(Dir, $"smp{lines}x{spin}.elf");
        File.WriteAllBytes(path, Encapsulation.MultiprocessorSnapshotTests.Guest(lines, spin));
        return path;
    }

    /// <summary>A token file for the hosts' migration listeners.</summary>
    protected string MigrationToken()
    {
        string token = Path.Combine(Dir, "migration-token");
        File.WriteAllText(token, "cluster-migration-token-0123456789\n");
        return token;
    }

    /// <summary>Waits until every host publishes its migration listener (a host does once serve has started it).</summary>
    protected void WaitForMigrationListeners() =>
        WaitFor(() => Cluster("cluster", "status").GetProperty("hosts").EnumerateArray()
            .Count(h => h.TryGetProperty("migrationEndpoint", out JsonElement e) && e.ValueKind == JsonValueKind.String) == Hosts.Count, "every host's migration listener");

    /// <summary>The vCPUs a host's own management API gives the VM.</summary>
    protected int VcpusOn(string host, string vm)
    {
        using HttpClient client = Host(host).UnixClient();
        ApiReply reply = ApiReply.Get(client, $"/api/vms/{vm}").Result;
        Assert.That(reply.Status, Is.EqualTo(200), $"{host}: GET /api/vms/{vm}: {reply}");
        return reply.Body.GetProperty("vcpus").GetArrayLength();
    }

    /// <summary>
    /// The VMs, or null while the list goes unanswered: after a host dies or freezes, and before the cluster has declared
    /// it dead, a call to a grain that was active on it gets no answer (the CLI exits 69); a wait asks again.
    /// </summary>
    protected JsonElement[]? TryVms()
    {
        CliProcess.Result list = TryCluster("vm", "list");
        if (list.ExitCode != 0)
        {
            TestContext.Out.WriteLine($"vm list went unanswered: {list.Stderr.Trim()}");
            return null;
        }

        return JsonDocument.Parse(list.Text).RootElement.GetProperty("vms").EnumerateArray().ToArray();
    }

    /// <summary>The VMs a host has, as its own management API says: name to (state, instructions retired, exit reason).</summary>
    protected Dictionary<string, (string State, long Instructions, string? Exit)> HostVms(string host)
    {
        using HttpClient client = Host(host).UnixClient();
        ApiReply reply = ApiReply.Get(client, "/api/vms").Result;
        Assert.That(reply.Status, Is.EqualTo(200), $"{host}: GET /api/vms: {reply}");
        return reply.Body.EnumerateArray().ToDictionary(
            v => v.GetProperty("name").GetString()!,
            v => (v.GetProperty("state").GetString()!, v.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64(),
                v.TryGetProperty("exit", out JsonElement exit) ? exit.GetProperty("reason").GetString() : null));
    }

    protected byte[] ConsoleOf(string host, string vm)
    {
        using HttpClient client = Host(host).UnixClient();
        return client.GetByteArrayAsync($"/api/vms/{vm}/console").Result;
    }

    protected static void WaitFor(Func<bool> condition, string what, int poll = 500, TimeSpan? within = null) =>
        WaitFor(() => condition() ? new object() : null, what, poll, within);

    protected static T WaitFor<T>(Func<T?> poll, string what, int pollMilliseconds = 500, TimeSpan? within = null) where T : class
    {
        DateTime deadline = DateTime.UtcNow + (within ?? Deadline);
        while (true)
        {
            if (poll() is { } value)
            {
                return value;
            }

            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), $"timed out waiting for {what}");
            Thread.Sleep(pollMilliseconds);
        }
    }
}
