using HybridVmm.Cluster;
using HybridVmm.Cluster.Placement;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// The one measure of load that placement and the balancer share (docs/cluster.md#load): the active VMs' vCPUs against
/// the vCPUs a host offers, and its memory in use against its host memory, the larger of the two. Each case is one where
/// counting VMs would decide otherwise.
/// </summary>
public class HostLoadTests
{
    private const long MiB = 1L << 20;

    private static HostStatus Host(string name, int vcpus, long memoryUsed, params HostVm[] vms) =>
        new($"127.0.0.1:1111{name[^1]}@1", name, new HostCapacity(vcpus, 512 * MiB, ["embedded:hello"]), memoryUsed, vms, "127.0.0.1:1");

    private static HostVm Vm(string name, int vcpus, string state = "running", long memory = 4 * MiB) => new(name, state, 0, memory, null, vcpus);

    private static VmSpec Spec(int cpus, string memory = "4M") => new("new", "embedded:hello", memory, "", 0, false, 1, cpus);

    [Test]
    public void TheBalancerMovesALargeVmOffTheHostWithFewerVmsButMoreVcpus()
    {
        HostStatus h1 = Host("h1", 4, 8 * MiB, Vm("big1", 3), Vm("big2", 3));
        HostStatus h2 = Host("h2", 4, 12 * MiB, Vm("small1", 1), Vm("small2", 1), Vm("small3", 1));
        HostStatus h3 = Host("h3", 4, 0);
        Assert.That(h2.ActiveVms, Is.GreaterThan(h1.ActiveVms), "by VM count h2 is the busier");

        var moves = LoadBalancing.Moves([h1, h2, h3], thresholdPercent: 50);

        Assert.That(moves, Is.Not.Null);
        Assert.Multiple(() =>
        {
            Assert.That((h1.LoadPercent, h2.LoadPercent, h3.LoadPercent), Is.EqualTo((150.0, 75.0, 0.0)));
            Assert.That(moves!.Value.Busiest.Name, Is.EqualTo("h1"));
            Assert.That(moves.Value.Idlest.Name, Is.EqualTo("h3"));
            Assert.That(moves.Value.Candidates.Select(v => v.Name), Is.EqualTo(new[] { "big1", "big2" }), "either big VM evens h1 and h3 out at 75%");
            Assert.That(LoadBalancing.Describe(h1), Is.EqualTo("h1 at 150% (6 of 4 vCPUs, 2 VMs)"));
        });
    }

    [Test]
    public void AMoveThatWouldOnlySwapTheImbalanceIsNotMade()
    {
        // 100% against 0%, far above the threshold; but the one VM moved would leave the other host at 100%.
        var moves = LoadBalancing.Moves([Host("h1", 4, 4 * MiB, Vm("wide", 4)), Host("h2", 4, 0)], thresholdPercent: 50);

        Assert.That(moves, Is.Not.Null);
        Assert.That(moves!.Value.Candidates, Is.Empty);
    }

    [Test]
    public void HostsWithinTheThresholdAreBalanced()
    {
        // 75% against 50%: 25 points apart, under a threshold of 50, although a 1-vCPU move would even them out.
        var moves = LoadBalancing.Moves([Host("h1", 4, 0, Vm("a", 1), Vm("b", 2)), Host("h2", 4, 0, Vm("c", 2))], thresholdPercent: 50);

        Assert.That(moves, Is.Null);
    }

    [Test]
    public void OnlyRunningVmsMoveButCreatedAndPausedOnesCountAsLoad()
    {
        HostStatus h1 = Host("h1", 4, 0, Vm("held", 2, "created"), Vm("paused", 2, "paused"), Vm("runs", 1), Vm("done", 4, "stopped"));

        var moves = LoadBalancing.Moves([h1, Host("h2", 4, 0)], thresholdPercent: 50);

        Assert.Multiple(() =>
        {
            Assert.That(h1.ActiveVcpus, Is.EqualTo(5), "a stopped VM holds nothing");
            Assert.That(moves!.Value.Candidates.Select(v => v.Name), Is.EqualTo(new[] { "runs" }));
        });
    }

    [Test]
    public void LeastLoadedPlacementCountsMemoryWhenItIsTheScarcerResource()
    {
        // h1 has one VM but little memory left (400 of 512 MiB: 78%); h2 has two VMs, two of its four vCPUs (50%).
        HostStatus h1 = Host("h1", 4, 400 * MiB, Vm("fat", 1, memory: 400 * MiB));
        HostStatus h2 = Host("h2", 4, 8 * MiB, Vm("a", 1), Vm("b", 1));

        Assert.That(PlacementPolicy.Choose([h1, h2], Spec(1), "least-loaded")?.Name, Is.EqualTo("h2"));
    }

    [Test]
    public void LeastLoadedPlacementCountsVcpusNotVms()
    {
        // h1 has one VM of four vCPUs (100%); h2 has three of one (75%).
        HostStatus h1 = Host("h1", 4, 16 * MiB, Vm("wide", 4));
        HostStatus h2 = Host("h2", 4, 12 * MiB, Vm("a", 1), Vm("b", 1), Vm("c", 1));

        Assert.That(PlacementPolicy.Choose([h1, h2], Spec(1), "least-loaded")?.Name, Is.EqualTo("h2"));
    }

    [Test]
    public void PackFillsTheFullestHostThatHasTheVcpusFreeThenOverflows()
    {
        HostStatus h1 = Host("h1", 4, 8 * MiB, Vm("a", 2));
        HostStatus h2 = Host("h2", 4, 4 * MiB, Vm("b", 1));

        Assert.Multiple(() =>
        {
            Assert.That(PlacementPolicy.Choose([h1, h2], Spec(2), "pack")?.Name, Is.EqualTo("h1"), "h1 reaches 100% and h2 stays as it is");
            Assert.That(PlacementPolicy.Choose([h1, h2], Spec(3), "pack")?.Name, Is.EqualTo("h2"), "h1 has only two vCPUs uncommitted");
            Assert.That(PlacementPolicy.Choose([h1, h2], Spec(4), "pack")?.Name, Is.EqualTo("h2"), "no host has four free: the least loaded takes it");
        });
    }

    [Test]
    public void NoHostTakesAVmWithMoreVcpusThanItOffers()
    {
        HostStatus[] hosts = [Host("h1", 2, 0), Host("h2", 4, 0)];

        Assert.Multiple(() =>
        {
            Assert.That(PlacementPolicy.Choose(hosts, Spec(4), "least-loaded")?.Name, Is.EqualTo("h2"));
            Assert.That(PlacementPolicy.Choose(hosts, Spec(5), "least-loaded"), Is.Null);
            Assert.That(PlacementPolicy.Choose(hosts, Spec(1, "600M"), "least-loaded"), Is.Null, "nor more memory than it has free");
        });
    }
}
