using System.Text;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.Reports;

/// <summary>A provisioning run as text: memory saved by sharing, then one row per clone.</summary>
public static class ProvisioningTable
{
    /// <summary>The deterministic part of the report (fit for snapshot tests).</summary>
    public static string Render(ProvisioningReport report)
    {
        var sb = new StringBuilder();
        sb.Append($"template '{report.Template}' frozen after {report.TemplateInstructions} instructions; {report.Clones} clones of {report.GuestMemoryBytes >> 20} MiB each\n");
        sb.Append($"host memory right after cloning: {report.HostBytesUsedAfterCloning >> 10} KiB used, {report.FullCopyBytes >> 10} KiB for full copies ({Saved(report, report.HostBytesUsedAfterCloning)} saved)\n");
        sb.Append($"host memory after the clones ran: {report.HostBytesUsedAfterRunning >> 10} KiB used ({Saved(report, report.HostBytesUsedAfterRunning)} saved)\n\n");
        bool disks = report.Results.Any(r => r.PrivateDiskSectors is not null);
        sb.Append($"{"clone",-8} {"identity",8} {"instructions",13} {"cow copies",11} {"shared pages",13}{(disks ? $" {"disk sectors",13}" : "")}  output\n");
        foreach (CloneResult r in report.Results)
        {
            string disk = disks ? $" {r.PrivateDiskSectors,13}" : "";
            sb.Append($"{r.Name,-8} {r.Identity,8} {r.Instructions,13} {r.CopyOnWriteCopies,11} {r.SharedPages,13}{disk}  {r.Output.TrimEnd('\n').Replace("\n", " | ")}\n");
        }

        return sb.ToString();
    }

    private static string Saved(ProvisioningReport report, long used) => $"{100.0 * (report.FullCopyBytes - used) / report.FullCopyBytes:0.0} %";
}
