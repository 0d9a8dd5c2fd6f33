using System.Globalization;
using System.Text;
using HybridVmm.Cli.Api;

namespace HybridVmm.Cli.Commands;

/// <summary>The human forms of the management API's answers, for <c>hybridvmm vm</c>.</summary>
internal static class VmTables
{
    public static string List(ApiResponse response)
    {
        VmInfo[] vms = response.Read<VmInfo[]>();
        var rows = new List<string[]> { new[] { "NAME", "STATE", "PARTITION", "MEMORY", "INSTRUCTIONS", "EXITS", "CHANNEL-MSGS", "SOURCE" } };
        foreach (VmInfo vm in vms)
        {
            rows.Add(new[]
            {
                vm.Name, vm.State, vm.PartitionId.ToString(CultureInfo.InvariantCulture), $"{vm.MemoryBytes >> 20}M",
                Number(vm.Statistics.InstructionsRetired), Number(vm.Statistics.Exits), Number(vm.Statistics.ChannelMessages), vm.Source,
            });
        }

        return Table(rows);
    }

    public static string Partitions(ApiResponse response)
    {
        PartitionInfo[] partitions = response.Read<PartitionInfo[]>();
        var rows = new List<string[]> { new[] { "ID", "KIND", "NAME", "STATE", "VM", "MEMORY", "VCPUS", "INSTRUCTIONS", "INTERCEPTS", "CHANNEL-MSGS" } };
        foreach (PartitionInfo p in partitions)
        {
            rows.Add(new[]
            {
                p.Id.ToString(CultureInfo.InvariantCulture), p.Kind, p.Name, p.State, p.Vm ?? "-", p.Kind == "root" ? "-" : $"{p.MemoryBytes >> 20}M",
                p.Vcpus.Count == 0 ? "-" : string.Join(' ', p.Vcpus.Select(v => v.State)), Number(p.InstructionsRetired), Number(p.Intercepts),
                Number(p.ChannelMessages),
            });
        }

        return Table(rows);
    }

    public static string Host(ApiResponse response)
    {
        HostInfo host = response.Read<HostInfo>();
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"version          {host.Version}\n");
        text.Append(CultureInfo.InvariantCulture, $"host memory      {host.HostMemoryUsedBytes >> 20} of {host.HostMemoryBytes >> 20} MiB in use\n");
        text.Append(CultureInfo.InvariantCulture, $"quantum          {Number(host.Quantum)} ticks\n");
        text.Append(CultureInfo.InvariantCulture, $"virtual time     {Number(host.VirtualTicks)} ticks after {Number(host.Rounds)} rounds\n");
        text.Append(CultureInfo.InvariantCulture, $"VMs              {host.VmCount}");
        if (host.VmsByState.Count > 0)
        {
            text.Append(" (").AppendJoin(", ", host.VmsByState.Select(p => $"{p.Value} {p.Key}")).Append(')');
        }

        return text.Append('\n').ToString();
    }

    public static string Show(ApiResponse response)
    {
        VmInfo vm = response.Read<VmInfo>();
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"name             {vm.Name}\n");
        text.Append(CultureInfo.InvariantCulture, $"state            {vm.State}\n");
        if (vm.Exit is { } exit)
        {
            text.Append(CultureInfo.InvariantCulture, $"exit             {exit.Reason} (value {exit.Value})\n");
        }

        text.Append(CultureInfo.InvariantCulture, $"partition        {vm.PartitionId}\n");
        text.Append(CultureInfo.InvariantCulture, $"source           {vm.Source}\n");
        text.Append(CultureInfo.InvariantCulture, $"memory           {vm.MemoryBytes >> 20} MiB\n");
        if (vm.CommandLine.Length > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"command line     {vm.CommandLine}\n");
        }

        text.Append("vCPUs            ").AppendJoin(", ", vm.Vcpus.Select(v => $"{v.Index}: {v.State}")).Append('\n');
        text.Append("devices          ").AppendJoin(", ", vm.Devices).Append('\n');
        if (vm.SyntheticDevices.Count > 0)
        {
            text.Append("synthetic        ").AppendJoin(", ", vm.SyntheticDevices).Append('\n');
        }

        text.Append(StatisticsText(vm.Statistics));
        if (vm.Exit?.Diagnostic is { } diagnostic)
        {
            text.Append('\n').Append(diagnostic).Append('\n');
        }

        return text.ToString();
    }

    public static string Statistics(ApiResponse response) => StatisticsText(response.Read<VmStatistics>());

    public static string State(ApiResponse response)
    {
        VmInfo vm = response.Read<VmInfo>();
        return $"{vm.Name}: {vm.State}\n";
    }

    public static string Saved(ApiResponse response)
    {
        SaveVmResult saved = response.Read<SaveVmResult>();
        return $"{saved.Name}: saved at instruction {Number(saved.InstructionsRetired)} to {saved.Path} ({Number(saved.Bytes)} bytes); it is {saved.State}\n";
    }

    public static string Migrated(ApiResponse response)
    {
        MigrateVmResult m = response.Read<MigrateVmResult>();
        return $"{m.Name}: migrated to {m.To} at instruction {Number(m.InstructionsRetired)}: {m.PagesPerRound.Count} pre-copy round{(m.PagesPerRound.Count == 1 ? "" : "s")} "
            + $"({string.Join(", ", m.PagesPerRound.Select(p => Number(p)))} pages), {Number(m.FinalPages)} pages in the final copy, "
            + $"{m.DowntimeMilliseconds.ToString("0.0", CultureInfo.InvariantCulture)} ms down; it runs there now\n";
    }

    private static string StatisticsText(VmStatistics s)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"instructions     {Number(s.InstructionsRetired)}\n");
        text.Append(CultureInfo.InvariantCulture, $"virtual time     {Number(s.VirtualTicks)} ticks\n");
        text.Append(CultureInfo.InvariantCulture, $"exits            {Number(s.Exits)}");
        if (s.ExitsByKind.Count > 0)
        {
            text.Append(" (").AppendJoin(", ", s.ExitsByKind.Select(p => $"{p.Key} {Number(p.Value)}")).Append(')');
        }

        text.Append('\n');
        text.Append(CultureInfo.InvariantCulture, $"channel messages {Number(s.ChannelMessages)}\n");
        text.Append(CultureInfo.InvariantCulture, $"console bytes    {Number(s.ConsoleBytes)}\n");
        return text.ToString();
    }

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string Table(List<string[]> rows)
    {
        int[] widths = new int[rows[0].Length];
        foreach (string[] row in rows)
        {
            for (int i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }

        var text = new StringBuilder();
        foreach (string[] row in rows)
        {
            for (int i = 0; i < row.Length; i++)
            {
                text.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 2));
            }

            text.Append('\n');
        }

        return text.ToString();
    }
}
