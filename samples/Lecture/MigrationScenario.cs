using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Migration;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// Live migration between two hypervisors over TCP on loopback (here in one process for the demo; the CLI's
/// <c>receive</c> and <c>run --migrate-to</c> do it between two processes). The CPU-heavy guest moves in the
/// middle of its work, and its output across the move equals an unmigrated run.
/// </summary>
public static class MigrationScenario
{
    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        byte[] image = EmbeddedGuests.Load("cpu")!;
        (string alone, _) = await MigrateAsync(image, 0);
        int failures = 0;
        foreach (long at in new long[] { 9_000_000, 14_000_000 })
        {
            (string moved, MigrationReport report) = await MigrateAsync(image, at);
            bool same = moved == alone;
            failures += same && report.Succeeded ? 0 : 1;
            output.WriteLine($"migrate at instruction {at}:");
            output.WriteLine($"  pre-copy rounds: {report.PagesPerRound.Count}, pages per round: {string.Join(", ", report.PagesPerRound)}");
            output.WriteLine($"  stop-and-copy: {report.FinalPages} pages plus vCPU and device state; virtual downtime {report.DowntimeTicks} ticks");
            output.WriteLine($"  output across the migration identical to an unmigrated run: {(same ? "yes" : "NO")}");
            measurements.WriteLine($"  wall-clock downtime: {report.DowntimeWallTime.TotalMilliseconds:0.0} ms");
        }

        return failures == 0 ? 0 : 1;
    }

    private static async Task<(string Output, MigrationReport Report)> MigrateAsync(byte[] image, long at)
    {
        var sourceConsole = new CapturingConsole();
        var targetConsole = new CapturingConsole();
        using var source = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 40L << 20 }, sourceConsole, new TraceRecorder(null));
        using var target = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 40L << 20 }, targetConsole, new TraceRecorder(null));
        VirtualMachine vm = source.Root.CreateVm(new VmConfiguration { Name = "cpu", Image = image, MemoryBytes = 32u << 20 }, out _)!;
        if (at > 0)
        {
            source.Root.PauseAtInstruction(vm, at);
        }

        source.Root.Start(vm);
        await source.RunUntilIdleAsync();
        if (at == 0)
        {
            return (sourceConsole.Text(vm), new MigrationReport(false, "not migrated", Array.Empty<int>(), 0, 0, TimeSpan.Zero, 0));
        }

        (MigrationReport report, VirtualMachine? moved) = await LiveMigration.OverLoopbackAsync(source, vm, target, new MigrationOptions());
        if (moved is null)
        {
            throw new InvalidOperationException(report.Failure);
        }

        target.Root.Start(moved);
        await target.RunUntilIdleAsync();
        return (sourceConsole.Text(vm) + targetConsole.Text(moved), report);
    }
}
