using System.Text;
using System.Text.Json;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// VMs of several vCPUs in the cluster, with real processes: a real redis-server and <c>hybridvmm serve --cluster</c>
/// hosts on 127.0.0.1, each offering four vCPUs (<c>--host-vcpus 4</c>, whatever this machine has). A VM of two vCPUs is
/// live-migrated between hosts and then restarted by HA after its host is killed, and prints exactly what a run alone
/// prints; a VM is made from a snapshot of two vCPUs. Every wait has a deadline; TearDown kills every process started.
/// </summary>
[NonParallelizable]
public class ClusterMultiprocessorTests : ClusterProcessTest
{
    /// <summary>Lines of the two-vCPU guest: its 54,004 bytes of output fit the 64 KiB a checkpoint's console keeps.</summary>
    private const int Lines = 2000;

    /// <summary>Turns of the boot vCPU's spin between two lines: long enough that the VM still runs after a move and two checkpoints.</summary>
    private const int Spin = 100_000;

    [Test]
    public void ATwoVcpuVmMigratedAndThenRestartedByHaFinishesWithTheOutputOfARunAlone()
    {
        string guest = TwoVcpuGuest(Lines, Spin);
        string expected = OutputAlone(guest, "--cpus", "2");
        StartCluster(["h1", "h2", "h3"], extra: ["--migration-listen", "127.0.0.1:0", "--migration-token-file", MigrationToken(), "--host-vcpus", "4", "--balance-every", "0"]);
        WaitForMigrationListeners();

        // Bad input: one line each, with its status.
        foreach ((string[] args, int status, string message) in new (string[], int, string)[]
        {
            (["--cpus", "0"], ExitStatus.Usage, "--cpus must be 1 to 64, not 0"),
            (["--cpus", "65"], ExitStatus.Usage, "--cpus must be 1 to 64, not 65"),
            (["--cpus", "5"], ExitStatus.Unavailable, $"no host of the cluster offers 5 vCPUs and 4M free and can reach '{guest}'"),
            (["--cpus", "5", "--host", "h3"], ExitStatus.Unavailable, "host h3 cannot take 'wide': it offers 4 vCPUs and has "),
        })
        {
            CliProcess.Result refused = CliProcess.Run(["vm", "create", "wide", "--image", guest, "--memory", "4M", .. args, "--cluster", Redis!.Connection]);
            Assert.That(refused.ExitCode, Is.EqualTo(status), string.Join(' ', args) + ": " + refused.Stderr);
            Assert.That(refused.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1).And.Some.StartsWith($"hybridvmm: error: {message}"),
                string.Join(' ', args));
        }

        JsonElement created = Cluster("vm", "create", "smp", "--image", guest, "--memory", "4M", "--cpus", "2", "--host", "h1", "--start",
            "--protected", "--checkpoint-every", "50000000");
        JsonElement h1 = Cluster("cluster", "status").GetProperty("hosts").EnumerateArray().Single(h => h.GetProperty("name").GetString() == "h1");
        Assert.Multiple(() =>
        {
            Assert.That((created.GetProperty("hostName").GetString(), created.GetProperty("vcpus").GetInt32()), Is.EqualTo(("h1", 2)));
            Assert.That(VcpusOn("h1", "smp"), Is.EqualTo(2), "h1's own API: the VM has two vCPUs");
            Assert.That((h1.GetProperty("activeVcpus").GetInt32(), h1.GetProperty("capacity").GetProperty("vcpus").GetInt32()), Is.EqualTo((2, 4)));
            Assert.That(h1.GetProperty("loadPercent").GetDouble(), Is.EqualTo(50), "two of the four vCPUs h1 offers");
        });
        CliProcess.Result table = CliProcess.Run("vm", "list", "--cluster", Redis!.Connection);
        Assert.That(table.Text, Does.Match(@"(?m)^h1 +\S+ +2/4 ").And.Match(@"(?m)^smp +h1 +\w+ +2 "), table.Text);

        // Live migration to h2: both vCPUs go, and nothing stays on h1.
        CliProcess.Result moved = CliProcess.Run("vm", "migrate", "smp", "--to", "h2", "--cluster", Redis.Connection);
        Assert.That(moved.ExitCode, Is.Zero, moved.Stderr);
        Assert.That(moved.Text, Does.StartWith("smp: migrated from h1 to h2 (epoch 2)"));
        Assert.Multiple(() =>
        {
            Assert.That(VcpusOn("h2", "smp"), Is.EqualTo(2), "h2's own API: the VM arrived with two vCPUs");
            Assert.That(HostVms("h1").Keys, Does.Not.Contain("smp"));
        });

        // HA: once h2 has checkpointed it twice (a second file means the first is recorded), h2 dies.
        WaitFor(() => File.Exists(Path.Combine(Checkpoints, "smp.e2.1.console")), "two checkpoints of the VM on h2", poll: 50);
        Assert.That(HostVms("h2")["smp"].State, Is.EqualTo("running"), "the guest ended before its host could be killed: it is too short for this machine");
        Host("h2").Kill();

        JsonElement vm = default;
        WaitFor(() => TryVms() is [var only] && (vm = only).GetProperty("state").GetString() is "stopped" or "lost", "the VM to finish");
        string host = vm.GetProperty("hostName").GetString()!;
        Assert.Multiple(() =>
        {
            Assert.That(vm.GetProperty("state").GetString(), Is.EqualTo("stopped"));
            Assert.That(vm.GetProperty("lastFailover").ValueKind, Is.EqualTo(JsonValueKind.Object), "restarted by HA");
            Assert.That(vm.GetProperty("epoch").GetInt64(), Is.EqualTo(3), "one migration and one restart, one new epoch each");
            Assert.That(host, Is.AnyOf("h1", "h3"));
            Assert.That(vm.GetProperty("vcpus").GetInt32(), Is.EqualTo(2));
        });
        Assert.That(VcpusOn(host, "smp"), Is.EqualTo(2), $"{host}'s own API: the VM restored from its checkpoint has two vCPUs");
        byte[] before = File.ReadAllBytes(vm.GetProperty("lastFailover").GetProperty("checkpoint").GetProperty("consolePath").GetString()!);
        Assert.That(Encoding.Latin1.GetString([.. before, .. ConsoleOf(host, "smp")]), Is.EqualTo(expected),
            $"its whole output, across the migration and the restart on {host}, against a run alone");
    }

    [Test]
    public void AVmMadeFromASnapshotOfTwoVcpusRunsOnWhereTheSnapshotWasTaken()
    {
        string guest = TwoVcpuGuest(300, 20_000);
        CliProcess.Result whole = CliProcess.Run("run", guest, "--cpus", "2");
        string snapshot = Path.Combine(Dir, "smp.snap");
        CliProcess.Result saved = CliProcess.Run("run", guest, "--cpus", "2", "--save-at", "5000000", "--save-to", snapshot);
        Assert.That((whole.ExitCode, saved.ExitCode), Is.EqualTo((0, 0)), whole.Stderr + saved.Stderr);
        StartCluster(["h1"], extra: ["--host-vcpus", "4"]);

        foreach ((string[] args, int status, string message) in new (string[], int, string)[]
        {
            (["--snapshot", snapshot, "--cpus", "2"], ExitStatus.Usage, "--cpus does not go with --snapshot"),
            (["--snapshot", snapshot, "--image", guest], ExitStatus.Usage, "a cluster VM needs either --image"),
            (["--snapshot", Path.Combine(Dir, "none.snap")], ExitStatus.NoInput, "cannot read snapshot '"),
            (["--snapshot", Dir], ExitStatus.NoInput, $"snapshot '{Dir}' is a directory"),
            (["--snapshot", guest], ExitStatus.InvalidImage, ""),
        })
        {
            CliProcess.Result refused = CliProcess.Run(["vm", "create", "bad", .. args, "--cluster", Redis!.Connection]);
            Assert.That(refused.ExitCode, Is.EqualTo(status), string.Join(' ', args) + ": " + refused.Stderr);
            Assert.That(refused.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1).And.Some.StartsWith($"hybridvmm: error: {message}"),
                string.Join(' ', args));
        }

        JsonElement created = Cluster("vm", "create", "restored", "--snapshot", snapshot, "--start");
        Assert.That((created.GetProperty("hostName").GetString(), created.GetProperty("vcpus").GetInt32()), Is.EqualTo(("h1", 2)), "the snapshot's vCPUs");
        JsonElement vm = default;
        WaitFor(() => Vms() is [var only] && (vm = only).GetProperty("state").GetString() == "stopped", "the VM to finish");
        Assert.Multiple(() =>
        {
            Assert.That(VcpusOn("h1", "restored"), Is.EqualTo(2));
            Assert.That(ConsoleOf("h1", "restored"), Is.Not.Empty, "saved before the guest's end");
            Assert.That(saved.Text + Encoding.Latin1.GetString(ConsoleOf("h1", "restored")), Is.EqualTo(whole.Text),
                "what the run printed before the save, then the cluster VM's output: a run alone");
            Assert.That(vm.GetProperty("history").EnumerateArray().Select(e => e.GetProperty("what").GetString()),
                Has.Some.Contains($"with 2 vCPUs from the snapshot {snapshot}"));
        });
    }

    [TestCase("--host-vcpus", "0", "--host-vcpus must be 1 to 4096, not 0")]
    [TestCase("--host-vcpus", "4097", "--host-vcpus must be 1 to 4096, not 4097")]
    [TestCase("--balance-threshold", "0", "--balance-every takes 0 (off) or 0.1 to 86400 seconds, and --balance-threshold 1 to 1000 percentage points of load")]
    public void AHostOfferingNoVcpusOrABadThresholdIsAUsageError(string option, string value, string message)
    {
        // Refused before the host tries to join: nothing listens at this Redis address.
        CliProcess.Result result = CliProcess.RunIn(Dir, "serve", "--api-socket", "api.sock", "--cluster", $"127.0.0.1:{RedisServer.FreePort()}", option, value);
        Assert.That((result.ExitCode, result.Stderr.Trim()), Is.EqualTo((ExitStatus.Usage, $"hybridvmm: error: {message}")));
    }
}
