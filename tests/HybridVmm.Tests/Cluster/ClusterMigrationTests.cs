using System.Text.Json;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// Live migration across the cluster (docs/cluster.md#live-migration-and-the-balancer) with real processes: a real
/// redis-server and three <c>hybridvmm serve --cluster</c> hosts with migration listeners on 127.0.0.1. A VM moved by
/// <c>vm migrate --cluster</c> and VMs moved by the balancer off an overloaded host must each print exactly what a run
/// alone prints, and end on one host only. Every wait has a deadline; TearDown kills every process the test started.
/// </summary>
[NonParallelizable]
public class ClusterMigrationTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(5);

    private const int Ticks = 60;

    /// <summary>Instructions between two ticks: long enough that the four VMs still run when the balancer looks.</summary>
    private const int TickInstructions = 40_000_000;

    private readonly List<(string Name, ServeProcess Serve)> _hosts = [];
    private RedisServer? _redis;
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-migrate-{Guid.NewGuid():N}"));

    [TearDown]
    public void StopEverything()
    {
        bool failed = TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed;
        foreach ((string name, ServeProcess serve) in _hosts)
        {
            if (failed)
            {
                TestContext.Out.WriteLine($"--- {name} ---");
                foreach (string line in serve.Stderr.Split('\n').Where(l => l.Contains("HybridVmm", StringComparison.Ordinal)))
                {
                    TestContext.Out.WriteLine(line.Length > 300 ? line[..300] : line);
                }
            }

            serve.Dispose();
        }

        _hosts.Clear();
        _redis?.Dispose();
        _redis = null;
        Directory.Delete(_dir, recursive: true);
    }

    [Test]
    public void VmsMovedByHandAndByTheBalancerEachRunOnceAndPrintWhatARunAlonePrints()
    {
        string guest = TickingGuest();
        CliProcess.Result alone = CliProcess.Run("run", guest);
        Assert.That(alone.ExitCode, Is.Zero, alone.Stderr);
        string expected = alone.Text;

        StartCluster("h1", "h2", "h3");
        JsonElement status = Cluster("cluster", "status", "--json");
        Assert.That(status.GetProperty("hosts").EnumerateArray().Select(h => h.GetProperty("migrationEndpoint").GetString()),
            Has.All.Match(@"^127\.0\.0\.1:\d+$"), "every host publishes its migration listener");

        // vm1 alone on h1 (one VM more than the others: below the balancer's threshold of two), moved by hand to h2. It
        // is protected, so that its checkpoints carry on across the move.
        Assert.That(Cluster("vm", "create", "vm1", "--image", guest, "--memory", "4M", "--host", "h1", "--start", "--protected", "--checkpoint-every", "50000000")
            .GetProperty("hostName").GetString(), Is.EqualTo("h1"), "--host places the VM there");
        CliProcess.Result moved = CliProcess.Run("vm", "migrate", "vm1", "--to", "h2", "--cluster", _redis!.Connection);
        Assert.That(moved.ExitCode, Is.Zero, moved.Stderr);
        Assert.That(moved.Text, Does.Match(@"^vm1: migrated from h1 to h2 \(epoch 2\) at instruction [\d,]+: \d+ pre-copy rounds?, [\d,]+ pages in the final copy, [\d.]+ ms down\n$"));

        // Three more on h1: three against one and none, the balancer's work.
        string[] names = ["vm2", "vm3", "vm4"];
        foreach (string name in names)
        {
            JsonElement created = Cluster("vm", "create", name, "--image", guest, "--memory", "4M", "--host", "h1", "--start");
            Assert.That(created.GetProperty("hostName").GetString(), Is.EqualTo("h1"));
        }

        // What the cluster refuses, each with one line and status 76.
        foreach ((string[] args, string why) in new (string[], string)[]
        {
            (["vm", "migrate", "vm1", "--to", "h2"], "'vm1' already runs on h2"),
            (["vm", "migrate", "vm2", "--to", "h9"], "no other host named 'h9' in the cluster"),
            (["vm", "migrate", "ghost"], "no VM named 'ghost' in the cluster"),
        })
        {
            CliProcess.Result refused = CliProcess.Run([.. args, "--cluster", _redis.Connection]);
            Assert.That((refused.ExitCode, refused.Stderr.Trim()), Is.EqualTo((76, $"hybridvmm: error: {why}")), string.Join(' ', args));
        }

        JsonElement[] done = WaitFor(() =>
        {
            JsonElement[] vms = Vms();
            return vms.All(v => v.GetProperty("state").GetString() == "stopped") ? vms : null;
        }, "every VM to finish");

        var movedByBalancer = new List<string>();
        foreach (JsonElement vm in done)
        {
            string name = vm.GetProperty("name").GetString()!;
            string host = vm.GetProperty("hostName").GetString()!;
            string[] history = vm.GetProperty("history").EnumerateArray().Select(e => e.GetProperty("what").GetString()!).ToArray();
            int migrations = history.Count(h => h.StartsWith("migrated from", StringComparison.Ordinal));
            if (history.Any(h => h.StartsWith("migrating from", StringComparison.Ordinal) && h.Contains("(balancer:", StringComparison.Ordinal)))
            {
                movedByBalancer.Add(name);
            }

            TestContext.Out.WriteLine($"{name}: ended on {host}, epoch {vm.GetProperty("epoch")}: {string.Join("; ", history)}");
            Assert.Multiple(() =>
            {
                Assert.That(vm.GetProperty("epoch").GetInt64(), Is.EqualTo(1 + migrations), $"{name}: each migration moves the epoch on");
                Assert.That(Encoding(ConsoleOf(host, name)), Is.EqualTo(expected), $"{name} (on {host}): its whole output, across its migrations, against a run alone");
                foreach ((string other, _) in _hosts.Where(h => h.Name != host))
                {
                    Assert.That(VmNamesOn(other), Does.Not.Contain(name), $"{name} is on {host} only, not also on {other}");
                }
            });
        }

        Assert.That(done.Single(v => v.GetProperty("name").GetString() == "vm1").GetProperty("history").EnumerateArray()
            .Select(e => e.GetProperty("what").GetString()), Has.Some.StartsWith("migrated from h1 to h2 (epoch 2)"));
        Assert.That(movedByBalancer, Is.Not.Empty, "the balancer moved none of the VMs off the loaded host");
    }

    /// <summary>A guest that prints "tick A" and on, <see cref="TickInstructions"/> apart, then exits with 0.</summary>
    private string TickingGuest()
    {
        string path = Path.Combine(_dir, "ticks.elf");
        File.WriteAllBytes(path, FlatKernel.Build(a =>
        {
            var outer = a.CreateLabel();
            var inner = a.CreateLabel();
            var halt = a.CreateLabel();
            a.mov(esi, 0);
            a.Label(ref outer);
            a.mov(ecx, TickInstructions / 2);
            a.Label(ref inner);
            a.dec(ecx);
            a.jnz(inner);
            a.mov(dx, 0x3F8);
            foreach (char c in "tick ")
            {
                a.mov(al, (byte)c);
                a.@out(dx, al);
            }

            a.mov(eax, esi);
            a.add(al, (byte)'A');
            a.@out(dx, al);
            a.mov(al, (byte)'\n');
            a.@out(dx, al);
            a.inc(esi);
            a.cmp(esi, Ticks);
            a.jne(outer);
            a.mov(dx, 0xF4);
            a.mov(al, 0);
            a.@out(dx, al);
            a.Label(ref halt);
            a.hlt();
            a.jmp(halt);
        }));
        return path;
    }

    private void StartCluster(params string[] names)
    {
        _redis = RedisServer.Start();
        string checkpoints = Path.Combine(_dir, "checkpoints");
        Directory.CreateDirectory(checkpoints);
        string token = Path.Combine(_dir, "migration-token");
        File.WriteAllText(token, "cluster-migration-token-0123456789\n");
        var starting = names.Select(name =>
        {
            string directory = Path.Combine(_dir, name);
            Directory.CreateDirectory(directory);
            string[] args =
            [
                "--api-socket", "api.sock", "--cluster", _redis.Connection, "--host-name", name,
                "--silo-port", RedisServer.FreePort().ToString(), "--gateway-port", RedisServer.FreePort().ToString(),
                "--checkpoint-dir", checkpoints, "--probe-timeout", "1", "--missed-probes", "2",
                "--migration-listen", "127.0.0.1:0", "--migration-token-file", token, "--balance-every", "1",
            ];
            return (name, Task.Run(() => ServeProcess.StartIn(directory, args)));
        }).ToArray();
        foreach ((string name, Task<ServeProcess> serve) in starting)
        {
            _hosts.Add((name, serve.Result));
        }

        // A host publishes its listener once serve has started it.
        WaitFor(() => Cluster("cluster", "status", "--json").GetProperty("hosts").EnumerateArray()
            .Count(h => h.TryGetProperty("migrationEndpoint", out JsonElement e) && e.ValueKind == JsonValueKind.String) == names.Length, "every host's migration listener");
    }

    private JsonElement Cluster(params string[] args)
    {
        CliProcess.Result result = CliProcess.Run([.. args, "--cluster", _redis!.Connection, .. args.Contains("--json") ? Array.Empty<string>() : ["--json"]]);
        Assert.That(result.ExitCode, Is.Zero, $"hybridvmm {string.Join(' ', args)}: {result.Stderr}");
        return JsonDocument.Parse(result.Text).RootElement.Clone();
    }

    private JsonElement[] Vms() => Cluster("vm", "list").GetProperty("vms").EnumerateArray().ToArray();

    private byte[] ConsoleOf(string host, string vm)
    {
        using HttpClient client = _hosts.Single(h => h.Name == host).Serve.UnixClient();
        return client.GetByteArrayAsync($"/api/vms/{vm}/console").Result;
    }

    private string[] VmNamesOn(string host)
    {
        using HttpClient client = _hosts.Single(h => h.Name == host).Serve.UnixClient();
        return JsonDocument.Parse(client.GetStringAsync("/api/vms").Result).RootElement.EnumerateArray()
            .Select(v => v.GetProperty("name").GetString()!).ToArray();
    }

    private static string Encoding(byte[] bytes) => System.Text.Encoding.Latin1.GetString(bytes);

    private static void WaitFor(Func<bool> condition, string what) => WaitFor(() => condition() ? new object() : null, what);

    private static T WaitFor<T>(Func<T?> poll, string what) where T : class
    {
        DateTime deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            if (poll() is { } value)
            {
                return value;
            }

            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), $"timed out waiting for {what}");
            Thread.Sleep(500);
        }
    }
}
