using HybridVmm.Cli.Common;
using HybridVmm.Reports;
using System.CommandLine;
using HybridVmm.Guests;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm compare-types</c>: one I/O workload under Type 1, Type 2 and hybrid device hosting.</summary>
internal static class CompareTypesCommand
{
    public static Command Create()
    {
        var guest = new Option<string>("--guest") { Description = "Embedded guest name or ELF path to run", DefaultValueFactory = _ => "iobench" };
        var max = new Option<long>("--max-instructions") { Description = "Stop the guest after N instructions in each configuration (0 = no limit); the status is then 124" };
        var command = new Command("compare-types", "Run the same guest under Type 1, Type 2 and hybrid device hosting and compare the cost of I/O") { guest, max };
        command.SetAction(async (result, cancellationToken) =>
        {
            string name = result.GetValue(guest)!;
            long maxInstructions = result.GetValue(max);
            if (maxInstructions < 0)
            {
                Console.Error.WriteLine("hybridvmm: error: --max-instructions must be zero or positive");
                return ExitStatus.Usage;
            }

            (byte[]? image, int refused) = await GuestFile.LoadGuestAsync(name, HostingComparison.GuestMemoryBytes, Console.Error, cancellationToken);
            if (image is null)
            {
                return refused;
            }

            // Checked once here, so a bad image is one line and 65, not a refusal thrown from inside the comparison.
            var config = new VmConfiguration { Name = Path.GetFileNameWithoutExtension(name), Image = image, MemoryBytes = HostingComparison.GuestMemoryBytes };
            if (HybridVmm.HostOS.RootPartition.Prepare(config, out VmCreationError? invalid) is null)
            {
                return Outcome.CreationFailed(invalid!, Console.Error);
            }

            var costs = new CrossingCostModel();
            using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var signals = new TerminationSignals(run);
            IReadOnlyList<HostingRow> rows = await HostingComparison.RunAsync(image, Path.GetFileNameWithoutExtension(name), costs, run.Token, maxInstructions);
            if (run.IsCancellationRequested)
            {
                return TerminationSignals.ReportInterrupted(Console.Error);
            }

            Console.Out.Write(HostingComparisonTable.Render(rows, costs));
            if (rows.Any(r => r.Outcome == StopReason.InstructionLimit))
            {
                // The table is still printed, but it compares runs cut short, so the status says so.
                Console.Error.WriteLine($"hybridvmm: guest '{Path.GetFileNameWithoutExtension(name)}' reached the instruction limit ({maxInstructions}); the comparison covers only those instructions.");
                return ExitStatus.InstructionLimit;
            }

            return ExitStatus.Success;
        });
        return command;
    }
}
