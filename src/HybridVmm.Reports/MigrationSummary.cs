using HybridVmm.Hardware.Clock;
using HybridVmm.HostOS.Migration;

namespace HybridVmm.Reports;

/// <summary>A live migration's outcome in one line: the pre-copy rounds, the stop-and-copy and the downtime.</summary>
public static class MigrationSummary
{
    public static string Render(MigrationReport report) => report.Succeeded
        ? $"migrated after {report.PagesPerRound.Count} pre-copy round(s), pages per round: {string.Join(", ", report.PagesPerRound)}; " +
          $"stop-and-copy of {report.FinalPages} page(s) at instruction {report.PausedAtInstruction}; " +
          $"downtime {report.DowntimeTicks} ticks of virtual time ({VirtualClock.Format(report.DowntimeTicks)}), {report.DowntimeWallTime.TotalMilliseconds:0.0} ms wall-clock"
        : $"migration failed: {report.Failure}; the VM keeps running here, nothing was lost";
}
