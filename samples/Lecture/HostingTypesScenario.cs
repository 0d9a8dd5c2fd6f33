using HybridVmm.Guests;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Reports;

namespace HybridVmm.Samples.Lecture;

/// <summary>Type 1 vs Type 2 vs Type 3 on the same I/O-bound guest, with the crossing cost model.</summary>
public static class HostingTypesScenario
{
    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        var costs = new CrossingCostModel();
        output.WriteLine($"cost model (cycles): VM exit+entry {costs.VmExitCycles}, system call {costs.SystemCallCycles}, context switch {costs.ContextSwitchCycles}, inter-partition message {costs.MessageCycles}, emulation {costs.EmulationCycles}");
        IReadOnlyList<HostingRow> rows = await HostingComparison.RunAsync(EmbeddedGuests.Load("iobench")!, "iobench", costs);
        output.Write(HostingComparisonTable.Render(rows, costs));
        return 0;
    }
}
