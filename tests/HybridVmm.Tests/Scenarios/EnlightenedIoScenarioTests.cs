using System.Text;
using ApprovalTests;
using HybridVmm.Samples.EnlightenedIo;

namespace HybridVmm.Tests.Scenarios;

/// <summary>The enlightened-I/O scenario: its report and the trace of each run, snapshot-approved.</summary>
public class EnlightenedIoScenarioTests
{
    private static readonly Lazy<Task<(int Status, string Report, Dictionary<string, IReadOnlyList<string>> Traces)>> Run = new(async () =>
    {
        var output = new StringWriter { NewLine = "\n" };
        var traces = new Dictionary<string, IReadOnlyList<string>>();
        int status = await EnlightenedIoScenario.RunAsync(output, traces);
        return (status, output.ToString(), traces);
    });

    [Test]
    public async Task TheScenarioReportShowsUartAndSyntheticCountsSideBySide()
    {
        (int status, string report, _) = await Run.Value;
        Assert.That(status, Is.Zero, report);
        Approvals.Verify(report);
    }

    [Test]
    public async Task TraceOfTheSyntheticConsoleRun() => Approvals.Verify(await Trace("console-synth"));

    [Test]
    public async Task TraceOfTheFirstDiskBoot() => Approvals.Verify(await Trace("disk-boot1"));

    [Test]
    public async Task TraceOfTheSecondDiskBoot() => Approvals.Verify(await Trace("disk-boot2"));

    [Test]
    public async Task TraceOfTwoGuestsPinging() => Approvals.Verify(await Trace("ping"));

    private static async Task<string> Trace(string name)
    {
        (_, _, Dictionary<string, IReadOnlyList<string>> traces) = await Run.Value;
        return string.Join("\n", traces[name]) + "\n";
    }

    /// <summary>The UART run's trace has four events per byte (about 25,000 lines): its head, its tail and its counts by kind are approved.</summary>
    [Test]
    public async Task TraceOfTheUartRunInOutline()
    {
        (_, _, Dictionary<string, IReadOnlyList<string>> traces) = await Run.Value;
        IReadOnlyList<string> lines = traces["console-uart"];
        var sb = new StringBuilder();
        sb.Append($"{lines.Count} events\n");
        foreach (var group in lines.GroupBy(l => l.Substring(13).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            sb.Append($"  {group.Key,-10} {group.Count()}\n");
        }

        sb.Append("first 40:\n");
        foreach (string line in lines.Take(40)) sb.Append(line).Append('\n');
        sb.Append("last 12:\n");
        foreach (string line in lines.TakeLast(12)) sb.Append(line).Append('\n');
        Approvals.Verify(sb.ToString());
    }

    [Test]
    public async Task TheScenarioIsDeterministic()
    {
        (_, string report, Dictionary<string, IReadOnlyList<string>> traces) = await Run.Value;
        var output = new StringWriter { NewLine = "\n" };
        var again = new Dictionary<string, IReadOnlyList<string>>();
        await EnlightenedIoScenario.RunAsync(output, again);
        Assert.That(output.ToString(), Is.EqualTo(report));
        foreach ((string name, IReadOnlyList<string> trace) in traces)
        {
            Assert.That(again[name], Is.EqualTo(trace), name);
        }
    }
}
