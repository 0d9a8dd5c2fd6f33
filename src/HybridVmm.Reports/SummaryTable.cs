using System.Text;
using HybridVmm.Hardware.Clock;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.Reports;

/// <summary>The per-guest summary: how it ended, instructions retired, intercepts by kind, channel messages and virtual time.</summary>
public static class SummaryTable
{
    /// <summary>Always shown; any other kind a guest produced (rdmsr, hypercall, cow-copy, ...) gets a column after these.</summary>
    private static readonly string[] BaseKinds = { "io-read", "io-write", "cpuid", "hlt", "unmapped-gpa", "fault" };

    public static string Render(IReadOnlyList<VirtualMachine> vms, long nowTicks)
    {
        var extra = new SortedSet<string>(StringComparer.Ordinal);
        foreach (VirtualMachine vm in vms)
        {
            extra.UnionWith(vm.Statistics.InterceptsByKind.Keys);
        }

        extra.ExceptWith(BaseKinds);
        string[] kinds = [.. BaseKinds, .. extra];
        var sb = new StringBuilder();
        sb.Append($"{"guest",-10} {"outcome",-14} {"instructions",13}");
        foreach (string kind in kinds)
        {
            sb.Append($" {kind,12}");
        }

        sb.Append($" {"messages",9} {"virtual time",13}\n");
        foreach (VirtualMachine vm in vms)
        {
            PartitionStatistics stats = vm.Statistics;
            sb.Append($"{vm.Name,-10} {Describe(vm),-14} {stats.InstructionsRetired,13}");
            foreach (string kind in kinds)
            {
                sb.Append($" {(stats.InterceptsByKind.TryGetValue(kind, out long n) ? n : 0),12}");
            }

            sb.Append($" {stats.ChannelMessages,9} {VirtualClock.Format(stats.VirtualTicks(nowTicks)),13}\n");
        }

        return sb.ToString();
    }

    private static string Describe(VirtualMachine vm) => vm.Exited.IsCompleted
        ? vm.Exited.Result.Reason switch
        {
            StopReason.GuestExit => $"exit {vm.Exited.Result.ExitValue}",
            StopReason.GuestFault => "fault",
            StopReason.Halted => "halted",
            StopReason.WorkerFailure => "worker failed",
            StopReason.InstructionLimit => "limit",
            _ => "stopped",
        }
        : vm.State.ToString().ToLowerInvariant();
}
