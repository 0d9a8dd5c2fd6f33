using System.Text.Json;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// The balancer counts load, not VMs (docs/cluster.md#load), with real processes: a real redis-server and three
/// <c>hybridvmm serve --cluster</c> hosts on 127.0.0.1 that each offer four vCPUs. h1 holds two VMs of three vCPUs (150%),
/// h2 three VMs of one (75%), h3 none. Counting VMs, h2 is the busiest and would lose a VM to h3; counting load, h1 is,
/// and it is one of h1's large VMs that must go. Every wait has a deadline; TearDown kills every process started.
/// </summary>
[NonParallelizable]
public class ClusterLoadBalancingTests : ClusterProcessTest
{
    [Test]
    public void TheBalancerMovesWorkOffTheHostWithFewerButLargerVmsNotOffTheHostWithMoreVms()
    {
        // The large VMs' application processors wait for a start-up IPI that never comes: a VM's load is the vCPUs it
        // has, as Hyper-V counts a VM's virtual processors. (A guest that prints its time stamp counter would print
        // other numbers beside another VM: a host's virtual time runs for all its VMs.)
        string large = TickingGuest(30, 20_000_000), small = TickingGuest(20, 10_000_000);
        string largeAlone = OutputAlone(large, "--cpus", "3"), smallAlone = OutputAlone(small);
        StartCluster(["h1", "h2", "h3"], extra: ["--migration-listen", "127.0.0.1:0", "--migration-token-file", MigrationToken(), "--host-vcpus", "4", "--balance-every", "1"]);
        WaitForMigrationListeners();

        string[] larges = ["large1", "large2"], smalls = ["small1", "small2", "small3"];
        foreach (string name in larges)
        {
            Cluster("vm", "create", name, "--image", large, "--memory", "4M", "--cpus", "3", "--host", "h1");
        }

        foreach (string name in smalls)
        {
            Cluster("vm", "create", name, "--image", small, "--memory", "4M", "--host", "h2");
        }

        // Created VMs hold their host's vCPUs (they will run there), so the load is all there before any VM runs.
        Dictionary<string, JsonElement> hosts = Cluster("cluster", "status").GetProperty("hosts").EnumerateArray().ToDictionary(h => h.GetProperty("name").GetString()!);
        Assert.That(hosts.Values.Select(h => (h.GetProperty("name").GetString(), h.GetProperty("activeVms").GetInt32(), h.GetProperty("activeVcpus").GetInt32(),
            h.GetProperty("loadPercent").GetDouble())), Is.EqualTo(new[] { ("h1", 2, 6, 150.0), ("h2", 3, 3, 75.0), ("h3", 0, 0, 0.0) }));

        Task.WaitAll([.. larges.Concat(smalls).Select(name => Task.Run(() => Cluster("vm", "start", name)))]);
        JsonElement[] done = WaitFor(() => TryVms() is { } vms && vms.All(v => v.GetProperty("state").GetString() == "stopped") ? vms : null, "every VM to finish");

        var moves = done
            .SelectMany(vm => vm.GetProperty("history").EnumerateArray().Select(e => (Vm: vm.GetProperty("name").GetString()!, At: e.GetProperty("at").GetDateTime(),
                What: e.GetProperty("what").GetString()!)))
            .Where(e => e.What.StartsWith("migrating from", StringComparison.Ordinal) && e.What.Contains("(balancer:", StringComparison.Ordinal))
            .OrderBy(e => e.At)
            .ToArray();
        foreach ((string vm, DateTime at, string what) in moves)
        {
            TestContext.Out.WriteLine($"{at:HH:mm:ss.fff} {vm}: {what}");
        }

        Assert.That(moves, Is.Not.Empty, "the balancer moved nothing");
        Assert.Multiple(() =>
        {
            Assert.That(moves[0].Vm, Is.AnyOf(larges), "the first VM the balancer moved");
            Assert.That(moves[0].What, Does.StartWith("migrating from h1 to h3 (balancer: h1 at 150% (6 of 4 vCPUs, 2 VMs), h3 at 0% (0 of 4 vCPUs, 0 VMs)"));
        });

        foreach (JsonElement vm in done)
        {
            string name = vm.GetProperty("name").GetString()!;
            string host = vm.GetProperty("hostName").GetString()!;
            Assert.Multiple(() =>
            {
                Assert.That(System.Text.Encoding.Latin1.GetString(ConsoleOf(host, name)), Is.EqualTo(larges.Contains(name) ? largeAlone : smallAlone),
                    $"{name} (on {host}): its whole output, across its migrations, against a run alone");
                foreach ((string other, _) in Hosts.Where(h => h.Name != host))
                {
                    Assert.That(HostVms(other).Keys, Does.Not.Contain(name), $"{name} is on {host} only, not also on {other}");
                }
            });
        }
    }
}
