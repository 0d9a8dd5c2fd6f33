using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Migration;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Reports;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>Live migration carries the synthetic state too: its final frame is a version-2 snapshot payload.</summary>
public class EnlightenedMigrationTests
{
    private static VmConfiguration Enlcon() => new()
    {
        Name = "enlcon", Image = Repository.ReadGuest("enlcon"), MemoryBytes = 8u << 20, CommandLine = "synth",
        SyntheticDevices = new[] { "synthcon" }, ConsoleInput = "ping from the host\n"u8.ToArray(),
    };

    [TestCase(0.02)]
    [TestCase(0.7)]
    [TestCase(0.95)]
    public async Task AnEnlightenedGuestMigratedOverLoopbackPrintsWhatAnUnmigratedRunPrints(double at)
    {
        EnlightenedSnapshotTests.Run expected = EnlightenedSnapshotTests.RunUninterrupted(Enlcon());
        var targetConsole = new CapturingConsole();
        using var target = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, targetConsole, new TraceRecorder(null));
        var sourceConsole = new CapturingConsole();
        using var source = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, sourceConsole, new TraceRecorder(null));
        VirtualMachine vm = source.Root.CreateVm(Enlcon(), out VmCreationError? error)!;
        Assert.That(vm, Is.Not.Null, error?.Message);
        source.Root.PauseAtInstruction(vm, (long)(expected.Instructions * at));
        source.Root.Start(vm);
        await source.RunUntilIdleAsync();
        Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));

        // A short pre-copy window keeps the guest on the source for part of its run, channel traffic included.
        (MigrationReport report, VirtualMachine? moved) = await LiveMigration.OverLoopbackAsync(
            source, vm, target, new MigrationOptions { MinimumWindowTicks = 5_000, TicksPerPage = 64 });
        Assert.That(report.Succeeded, Is.True, report.Failure);
        TestContext.Out.WriteLine(MigrationSummary.Render(report));
        target.Root.Start(moved!);
        await target.RunUntilIdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(moved!.Exited.Result.Reason, Is.EqualTo(StopReason.GuestExit), moved.Exited.Result.Diagnostic);
            Assert.That(sourceConsole.Text(vm) + targetConsole.Text(moved!), Is.EqualTo(expected.Output));
            Assert.That(moved!.Statistics.InstructionsRetired, Is.EqualTo(expected.Instructions));
        });
    }
}
