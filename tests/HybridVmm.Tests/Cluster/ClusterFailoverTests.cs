using System.Text;
using System.Text.Json;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// The cluster with real processes: a real redis-server and three <c>hybridvmm serve --cluster</c> hosts on 127.0.0.1,
/// driven by the real CLI. Every wait has a deadline; TearDown kills every process the test started.
/// </summary>
[NonParallelizable]
public class ClusterFailoverTests : ClusterProcessTest
{
    private const int Ticks = 100;

    /// <summary>Long enough (1.6 G instructions in all) that the victim's VMs still run when it is killed, once every start has returned.</summary>
    private const int InstructionsPerTick = 16_000_000;

    [Test]
    public void ProtectedVmsOfAKilledHostFinishOnTheSurvivorsWithTheOutputOfARunAlone()
    {
        string guest = TickingGuest(Ticks, InstructionsPerTick);
        string expected = OutputAlone(guest);
        Assert.That(expected, Does.EndWith($"tick {(char)('A' + Ticks - 1)}\n"));

        StartCluster(["h1", "h2", "h3"]);
        JsonElement status = Cluster("cluster", "status", "--json");
        Assert.That(status.GetProperty("hosts").EnumerateArray().Select(h => h.GetProperty("name").GetString()), Is.EquivalentTo(new[] { "h1", "h2", "h3" }));
        Assert.That(status.GetProperty("hosts")[0].GetProperty("capacity").GetProperty("images").EnumerateArray().Select(i => i.GetString()),
            Does.Contain("embedded:hello"), "a host publishes the guest images it can reach");

        // Placing 6 VMs one after another, least-loaded: two on each host. They start together afterwards, so that
        // the first is still running when the last is placed.
        string[] names = Enumerable.Range(1, 6).Select(i => $"vm{i}").ToArray();
        foreach (string name in names)
        {
            Cluster("vm", "create", name, "--image", guest, "--memory", "4M", "--protected", "--checkpoint-every", CheckpointEvery.ToString());
        }

        JsonElement[] placed = Vms();
        Assert.That(placed.GroupBy(v => v.GetProperty("hostName").GetString()).Select(g => g.Count()), Is.EquivalentTo(new[] { 2, 2, 2 }),
            string.Join(", ", placed.Select(v => $"{v.GetProperty("name")} on {v.GetProperty("hostName")}")));

        // The victim's VMs each have a checkpoint and still run when it dies. Every start has returned by then: a start
        // whose grain lived on the victim could otherwise be lost with it, and its client would rightly say the cluster
        // did not answer (69).
        const string victim = "h1";
        string[] onVictim = placed.Where(v => v.GetProperty("hostName").GetString() == victim).Select(v => v.GetProperty("name").GetString()!).ToArray();
        Task.WaitAll(names.Select(name => Task.Run(() => Cluster("vm", "start", name))).ToArray());
        // A host writes a VM's next checkpoint only once its grain has taken the one before: a second checkpoint file
        // means the first is in Redis. (Files are polled, not the CLI, so that the guests are still young.)
        WaitFor(() => onVictim.All(name => File.Exists(Path.Combine(Checkpoints, $"{name}.e1.1.console"))), "the victim's VMs to have a checkpoint", poll: 50);
        Host(victim).Kill();

        JsonElement[] done = WaitFor(() =>
        {
            if (TryVms() is not { } vms)
            {
                return null;
            }

            Assert.That(vms.Where(v => v.GetProperty("state").GetString() == "lost").Select(v => v.GetProperty("name").GetString()), Is.Empty, "VMs lost");
            return vms.All(v => v.GetProperty("state").GetString() == "stopped") ? vms : null;
        }, "every VM to finish");

        JsonElement[] failedOver = done.Where(v => v.GetProperty("lastFailover").ValueKind == JsonValueKind.Object).ToArray();
        Assert.That(failedOver.Select(v => v.GetProperty("name").GetString()), Is.SubsetOf(onVictim));
        Assert.That(failedOver, Is.Not.Empty, "the victim's VMs had all finished before it was killed: nothing was failed over");
        foreach (JsonElement vm in done)
        {
            string name = vm.GetProperty("name").GetString()!;
            string host = vm.GetProperty("hostName").GetString()!;
            byte[] before = [];
            if (vm.GetProperty("lastFailover") is { ValueKind: JsonValueKind.Object } report)
            {
                Assert.That(vm.GetProperty("epoch").GetInt64(), Is.EqualTo(2), $"{name}: one restart, one new epoch");
                Assert.That(host, Is.Not.EqualTo(victim));
                before = File.ReadAllBytes(report.GetProperty("checkpoint").GetProperty("consolePath").GetString()!);
                TestContext.Out.WriteLine($"{name}: {victim} -> {report.GetProperty("newHost")}: detection {report.GetProperty("detectionSeconds")} s, " +
                    $"restart {report.GetProperty("restartSeconds")} s, at least {report.GetProperty("instructionsLost")} instructions lost " +
                    $"since the checkpoint at {report.GetProperty("checkpointInstructions")}");
            }

            if (host == victim)
            {
                // It finished on the victim before the kill (the guests run faster than the checkpoints are taken):
                // nothing to fail over, and its console went with its host.
                Assert.That(onVictim, Does.Contain(name));
                TestContext.Out.WriteLine($"{name}: finished on {victim} before it was killed");
                continue;
            }
            string output = Encoding.Latin1.GetString([.. before, .. ConsoleOf(host, name)]);
            Assert.That(output, Is.EqualTo(expected), $"{name} (on {host}): its whole output, across the failover, against a run alone");
        }
    }

    [Test]
    public void ClusterOptionsWithoutClusterAreAUsageError()
    {
        CliProcess.Result result = CliProcess.RunIn(Dir, "serve", "--api-socket", "api.sock", "--silo-port", "20000");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Usage));
        Assert.That(result.Stderr, Does.Contain("--silo-port goes with --cluster").And.Not.Contain("   at "));
    }

    [Test]
    public void ServeWithNothingAtTheRedisAddressCannotJoinAndSaysSoOnce()
    {
        CliProcess.Result result = CliProcess.RunIn(Dir, "serve", "--api-socket", "api.sock", "--cluster", $"127.0.0.1:{RedisServer.FreePort()}",
            "--silo-port", RedisServer.FreePort().ToString(), "--gateway-port", RedisServer.FreePort().ToString(), "--checkpoint-dir", "ck");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Unavailable), result.Stderr);
        Assert.That(result.Stderr, Does.Contain("hybridvmm: error: cannot join the cluster at").And.Not.Contain("   at "));
    }

    [Test]
    public void ClusterStatusWithNothingAtTheRedisAddressIsUnavailable()
    {
        CliProcess.Result result = CliProcess.Run("cluster", "status", "--cluster", $"127.0.0.1:{RedisServer.FreePort()},connectTimeout=500");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Unavailable), result.Stderr);
        Assert.That(result.Stderr, Does.StartWith("hybridvmm: error: cannot reach the cluster").And.Not.Contain("   at "));
    }
}
