using System.Text;
using HybridVmm.Hardware.Clock;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Intercepts;

namespace HybridVmm.Reports;

/// <summary>The Type 1 / Type 2 / Type 3 comparison as a table, followed by what the figures say.</summary>
public static class HostingComparisonTable
{
    public static string Render(IReadOnlyList<HostingRow> rows, CrossingCostModel costs)
    {
        var sb = new StringBuilder();
        sb.Append($"{"configuration",-14} {"instructions",12} {"exits",7} {"crossings",10} {"latency/IO",11} {"virtual time",13} {"throughput",14}\n");
        foreach (HostingRow r in rows)
        {
            sb.Append($"{Label(r.Hosting),-14} {r.Instructions,12} {r.Exits,7} {r.Crossings,10} {r.LatencyPerIo,8:0} ns {VirtualClock.Format(r.VirtualTicks),13} {r.Throughput / 1024,9:0.0} KiB/s\n");
        }

        HostingRow type1 = rows.Single(r => r.Hosting == DeviceHosting.Type1);
        HostingRow type2 = rows.Single(r => r.Hosting == DeviceHosting.Type2);
        HostingRow hybrid = rows.Single(r => r.Hosting == DeviceHosting.Hybrid);
        sb.Append('\n');
        sb.Append($"Type 1 serves an I/O exit {type2.LatencyPerIo / type1.LatencyPerIo:0.0}x faster than Type 2: the exit is handled where it lands ({costs.VmExitCycles} cycles for the VM exit and entry plus {costs.EmulationCycles} of emulation), with no trip through a host OS.\n");
        sb.Append($"Type 2 crosses the host's system-call boundary and scheduler on every exit ({type2.Crossings / Math.Max(type2.Exits, 1)} crossings per exit against 1).\n");
        sb.Append($"Hybrid pays an inter-partition message each way and the root's scheduler ({hybrid.Crossings / Math.Max(hybrid.Exits, 1)} crossings per exit): {hybrid.LatencyPerIo / type1.LatencyPerIo:0.0}x Type 1 for an emulated device. It buys isolation (drivers out of the kernel) and reuse of the host OS's drivers; enlightened, batched I/O is how it wins the cost back.\n");
        sb.Append($"The guest's work is identical in all three: {type1.Instructions} instructions and {type1.Exits} exits each time.\n");
        return sb.ToString();
    }

    private static string Label(DeviceHosting hosting) => hosting switch
    {
        DeviceHosting.Type1 => "Type 1",
        DeviceHosting.Type2 => "Type 2",
        _ => "Hybrid (T3)",
    };
}
