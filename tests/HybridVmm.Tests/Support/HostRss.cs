using System.Globalization;
using System.Text.RegularExpressions;

namespace HybridVmm.Tests.Support;

/// <summary>What a HybridVmm process costs the host in memory: its resident set, read from Linux.</summary>
public static class HostRss
{
    public const string TimeProgram = "/usr/bin/time";

    /// <summary>Null when RSS can be measured here (Linux with <c>/usr/bin/time</c>), else why not.</summary>
    public static string? Unavailable => OperatingSystem.IsLinux() && File.Exists(TimeProgram)
        ? null
        : $"measures RSS on Linux, peak RSS with {TimeProgram} (Debian package time)";

    /// <summary>A process's peak resident set size so far, in bytes (VmHWM in /proc/PID/status).</summary>
    public static long Peak(int pid) => Field(pid, "VmHWM:");

    /// <summary>A process's resident set size now, in bytes (VmRSS in /proc/PID/status).</summary>
    public static long Current(int pid) => Field(pid, "VmRSS:");

    /// <summary>Runs the CLI under <c>/usr/bin/time</c>; its result (stderr without time's line) and its peak RSS in bytes.</summary>
    public static (CliProcess.Result Result, long PeakRssBytes) Run(params string[] args)
    {
        CliProcess.Result result = CliProcess.RunProgram(TimeProgram,
            ["-f", "peak-rss-kib=%M", "dotnet", Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), .. args], Repository.Root);
        Match peak = Regex.Match(result.Stderr, @"peak-rss-kib=(\d+)");
        Assert.That(peak.Success, Is.True, $"no peak RSS from {TimeProgram}: {result.Stderr}");
        return (result with { Stderr = result.Stderr.Replace(peak.Value, "") }, long.Parse(peak.Groups[1].Value, CultureInfo.InvariantCulture) << 10);
    }

    private static long Field(int pid, string name)
    {
        string line = File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith(name, StringComparison.Ordinal));
        return long.Parse(Regex.Match(line, @"\d+").Value, CultureInfo.InvariantCulture) << 10;
    }
}
