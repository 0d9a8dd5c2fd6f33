using ApprovalTests;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Reports;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Lecture;

/// <summary>Type 1 vs Type 2 vs Type 3: the same workload and device code under three configurations.</summary>
public class HostingComparisonTests
{
    [Test]
    public async Task TheSameIoWorkloadCostsLeastUnderType1AndEveryConfigurationDoesTheSameWork()
    {
        var costs = new CrossingCostModel();
        IReadOnlyList<HostingRow> rows = await HostingComparison.RunAsync(Repository.ReadGuest("iobench"), "iobench", costs);
        HostingRow type1 = rows.Single(r => r.Hosting == DeviceHosting.Type1);
        HostingRow type2 = rows.Single(r => r.Hosting == DeviceHosting.Type2);
        HostingRow hybrid = rows.Single(r => r.Hosting == DeviceHosting.Hybrid);
        Assert.Multiple(() =>
        {
            Assert.That(rows.Select(r => r.Outcome), Is.All.EqualTo(StopReason.GuestExit));
            Assert.That(rows.Select(r => r.Instructions).Distinct().Count(), Is.EqualTo(1), "the guest executes the same code");
            Assert.That(rows.Select(r => r.Exits).Distinct().Count(), Is.EqualTo(1), "and exits the same number of times");
            Assert.That(type1.BytesOut, Is.EqualTo(4096));
            Assert.That(type1.LatencyPerIo, Is.LessThan(type2.LatencyPerIo), "Type 1 has lower I/O latency than Type 2");
            Assert.That(type1.Crossings, Is.EqualTo(type1.Exits), "Type 1 crosses one boundary per exit");
            Assert.That(type2.Crossings, Is.GreaterThan(hybrid.Crossings));
            Assert.That(type1.Throughput, Is.GreaterThan(type2.Throughput));
        });
        Approvals.Verify(HostingComparisonTable.Render(rows, costs));
    }

    [Test]
    public void TheCostModelChargesEachCrossingItCounts()
    {
        var costs = new CrossingCostModel { VmExitCycles = 1000, SystemCallCycles = 10, ContextSwitchCycles = 100, MessageCycles = 50, EmulationCycles = 1 };
        Assert.Multiple(() =>
        {
            Assert.That(costs.For(DeviceHosting.Type1), Is.EqualTo(new InterceptCost(1001, 1)));
            Assert.That(costs.For(DeviceHosting.Type2), Is.EqualTo(new InterceptCost(1000 + 20 + 200 + 1 + 10, 6)));
            Assert.That(costs.For(DeviceHosting.Hybrid), Is.EqualTo(new InterceptCost(1000 + 100 + 200 + 1, 5)));
        });
    }

    [Test]
    public void TheCompareTypesCommandPrintsATableWithTheLecturesClaims()
    {
        CliProcess.Result result = CliProcess.Run("compare-types");
        Assert.That(result.ExitCode, Is.Zero, result.Stderr);
        Assert.That(result.Text, Does.Contain("Type 1").And.Contain("Type 2").And.Contain("Hybrid (T3)").And.Contain("faster than Type 2"));
    }
}
