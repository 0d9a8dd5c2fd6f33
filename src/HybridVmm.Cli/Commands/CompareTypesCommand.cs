using HybridVmm.Cli.Common;
using HybridVmm.Reports;
using System.CommandLine;
using HybridVmm.Guests;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Intercepts;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm compare-types</c>: one I/O workload under Type 1, Type 2 and hybrid device hosting.</summary>
internal static class CompareTypesCommand
{
    public static Command Create()
    {
        var guest = new Option<string>("--guest") { Description = "Embedded guest name or ELF path to run", DefaultValueFactory = _ => "iobench" };
        var command = new Command("compare-types", "Run the same guest under Type 1, Type 2 and hybrid device hosting and compare the cost of I/O") { guest };
        command.SetAction(async (result, cancellationToken) =>
        {
            string name = result.GetValue(guest)!;
            byte[]? image = EmbeddedGuests.Load(name) ?? (File.Exists(name) ? await File.ReadAllBytesAsync(name, cancellationToken) : null);
            if (image is null)
            {
                Console.Error.WriteLine($"hybridvmm: error: no embedded guest or file named '{name}'");
                return ExitStatus.NoInput;
            }

            var costs = new CrossingCostModel();
            using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var signals = new TerminationSignals(run);
            IReadOnlyList<HostingRow> rows = await HostingComparison.RunAsync(image, Path.GetFileNameWithoutExtension(name), costs, run.Token);
            if (run.IsCancellationRequested)
            {
                return TerminationSignals.ReportInterrupted(Console.Error);
            }

            Console.Out.Write(HostingComparisonTable.Render(rows, costs));
            return ExitStatus.Success;
        });
        return command;
    }
}
