using System.Text.Json;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// Live migration across the cluster (docs/cluster.md#live-migration-and-the-balancer) with real processes: a real
/// redis-server and three <c>hybridvmm serve --cluster</c> hosts with migration listeners on 127.0.0.1. A VM moved by
/// <c>vm migrate --cluster</c> and VMs moved by the balancer off an overloaded host must each print exactly what a run
/// alone prints, and end on one host only. Every wait has a deadline; TearDown kills every process the test started.
/// </summary>
[NonParallelizable]
public class ClusterMigrationTests : ClusterProcessTest
{
    private const int Ticks = 60;

    /// <summary>Instructions between two ticks: long enough that the four VMs still run when the balancer looks.</summary>
    private const int MigrationTickInstructions = 40_000_000;

    [Test]
    public void VmsMovedByHandAndByTheBalancerEachRunOnceAndPrintWhatARunAlonePrints()
    {
        string guest = TickingGuest(Ticks, MigrationTickInstructions);
        string expected = OutputAlone(guest);

        StartCluster(["h1", "h2", "h3"], extra: ["--migration-listen", "127.0.0.1:0", "--migration-token-file", MigrationToken(), "--balance-every", "1"]);
        // A host publishes its listener once serve has started it.
        WaitFor(() => Cluster("cluster", "status", "--json").GetProperty("hosts").EnumerateArray()
            .Count(h => h.TryGetProperty("migrationEndpoint", out JsonElement e) && e.ValueKind == JsonValueKind.String) == 3, "every host's migration listener");
        JsonElement status = Cluster("cluster", "status", "--json");
        Assert.That(status.GetProperty("hosts").EnumerateArray().Select(h => h.GetProperty("migrationEndpoint").GetString()),
            Has.All.Match(@"^127\.0\.0\.1:\d+$"), "every host publishes its migration listener");

        // vm1 alone on h1 (moving it would only swap the imbalance, which the balancer never does), moved by hand to h2. It
        // is protected, so that its checkpoints carry on across the move.
        Assert.That(Cluster("vm", "create", "vm1", "--image", guest, "--memory", "4M", "--host", "h1", "--start", "--protected", "--checkpoint-every", "50000000")
            .GetProperty("hostName").GetString(), Is.EqualTo("h1"), "--host places the VM there");
        CliProcess.Result moved = CliProcess.Run("vm", "migrate", "vm1", "--to", "h2", "--cluster", Redis!.Connection);
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
            CliProcess.Result refused = CliProcess.Run([.. args, "--cluster", Redis.Connection]);
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
                Assert.That(System.Text.Encoding.Latin1.GetString(ConsoleOf(host, name)), Is.EqualTo(expected), $"{name} (on {host}): its whole output, across its migrations, against a run alone");
                foreach ((string other, _) in Hosts.Where(h => h.Name != host))
                {
                    Assert.That(HostVms(other).Keys, Does.Not.Contain(name), $"{name} is on {host} only, not also on {other}");
                }
            });
        }

        Assert.That(done.Single(v => v.GetProperty("name").GetString() == "vm1").GetProperty("history").EnumerateArray()
            .Select(e => e.GetProperty("what").GetString()), Has.Some.StartsWith("migrated from h1 to h2 (epoch 2)"));
        Assert.That(movedByBalancer, Is.Not.Empty, "the balancer moved none of the VMs off the loaded host");
    }
}
