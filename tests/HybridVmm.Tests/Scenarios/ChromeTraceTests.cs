using System.Text.Json;
using ApprovalTests;
using HybridVmm.Cli.Common;
using HybridVmm.Cli.Tracing;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Scenarios;

/// <summary>
/// The Chrome trace-event / Perfetto form of the trace (docs/trace-format.md#the-json-form-perfetto-and-chrometracing):
/// a process per partition, a thread per vCPU and per root worker, exits and root round trips as slices, messages as
/// flow arrows, on virtual time, the same bytes for the same run.
/// </summary>
public class ChromeTraceTests
{
    [Test]
    public async Task HelloGuestChromeTrace()
    {
        Approvals.Verify(await ChromeTraceOf("hello"));
    }

    [Test]
    public async Task TheJsonParsesAndHasAProcessPerPartitionAThreadPerVcpuAndWorkerSlicesAndPairedFlows()
    {
        string[] text = await TextTraceOf("hello");
        using JsonDocument json = JsonDocument.Parse(await ChromeTraceOf("hello"));
        JsonElement[] events = json.RootElement.GetProperty("traceEvents").EnumerateArray().ToArray();
        string Name(JsonElement e) => e.GetProperty("args").GetProperty("name").GetString()!;
        var processes = events.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "process_name")
            .ToDictionary(e => e.GetProperty("pid").GetInt32(), Name);
        var threads = events.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .ToDictionary(e => (e.GetProperty("pid").GetInt32(), e.GetProperty("tid").GetInt32()), Name);
        JsonElement[] slices = events.Where(e => e.GetProperty("ph").GetString() == "X").ToArray();
        JsonElement[] exits = slices.Where(e => e.GetProperty("cat").GetString() == "exit").ToArray();
        JsonElement[] roundTrips = slices.Where(e => e.GetProperty("cat").GetString() == "root round trip").ToArray();
        int intercepts = text.Count(l => l.Contains(" Intercept ", StringComparison.Ordinal) && l.EndsWith("-> root.intercepts", StringComparison.Ordinal));

        Assert.Multiple(() =>
        {
            Assert.That(json.RootElement.GetProperty("displayTimeUnit").GetString(), Is.EqualTo("ns"));
            Assert.That(processes.Values, Is.EquivalentTo(new[] { "root partition (host OS)", "hello (guest partition)" }));
            int guest = processes.Single(p => p.Value.StartsWith("hello", StringComparison.Ordinal)).Key;
            int root = processes.Single(p => p.Value.StartsWith("root", StringComparison.Ordinal)).Key;
            Assert.That(threads[(guest, 1)], Is.EqualTo("vCPU 0"));
            Assert.That(threads.Values, Does.Contain("worker.hello"));
            Assert.That(intercepts, Is.GreaterThan(50), "the hello guest's UART writes");
            Assert.That(exits, Has.Length.EqualTo(intercepts), "one exit slice per intercept served by the root");
            Assert.That(roundTrips, Has.Length.EqualTo(intercepts), "one slice on the root's worker per intercept");
            Assert.That(exits.All(e => e.GetProperty("pid").GetInt32() == guest && e.GetProperty("tid").GetInt32() == 1), Is.True);
            Assert.That(roundTrips.All(e => e.GetProperty("pid").GetInt32() == root && threads[(root, e.GetProperty("tid").GetInt32())] == "worker.hello"), Is.True);
            Assert.That(events.Where(e => e.TryGetProperty("pid", out _)).All(e =>
                    e.GetProperty("ph").GetString() == "M" || threads.ContainsKey((e.GetProperty("pid").GetInt32(), e.GetProperty("tid").GetInt32()))
                    || e.GetProperty("tid").GetInt32() == 0), Is.True, "every event is on a named thread");

            // Each round trip sends the intercept to the worker and the reply back: two arrows, each a start and a finish.
            var flows = events.Where(e => e.GetProperty("ph").GetString() is "s" or "f").GroupBy(e => e.GetProperty("id").GetInt64()).ToArray();
            Assert.That(flows, Has.Length.EqualTo(2 * intercepts));
            Assert.That(flows.All(f => f.Select(e => e.GetProperty("ph").GetString()).SequenceEqual(new[] { "s", "f" })), Is.True);
            Assert.That(flows.All(f => f.First().GetProperty("ts").GetDouble() <= f.Last().GetProperty("ts").GetDouble()), Is.True, "an arrow never goes back in time");

            // Virtual time: the first exit slice starts at the first intercept's tick (ticks are ns; ts is in µs).
            long firstTick = long.Parse(text.First(l => l.Contains(" Intercept ", StringComparison.Ordinal)).TrimStart().Split(' ')[0]);
            Assert.That(exits[0].GetProperty("ts").GetDecimal(), Is.EqualTo(firstTick / 1000m));
        });
    }

    [Test]
    public void RunWritesJsonForATraceFileNamedJsonTheSameOnEveryRunAndAsTraceConvertWrites()
    {
        string directory = Path.Combine(Path.GetTempPath(), $"hybridvmm-json-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        try
        {
            string Run(string file)
            {
                CliProcess.Result run = CliProcess.Run("run", Repository.GuestElf("hello"), "--memory", "4M", "--trace", Path.Combine(directory, file));
                Assert.That(run.ExitCode, Is.Zero, run.Stderr);
                return File.ReadAllText(Path.Combine(directory, file));
            }

            string first = Run("first.json");
            string second = Run("second.json");
            Run("hello.trace");
            CliProcess.Result convert = CliProcess.Run("trace", "convert", Path.Combine(directory, "hello.trace"), Path.Combine(directory, "converted.json"));
            Assert.That(convert.ExitCode, Is.Zero, convert.Stderr);
            Assert.Multiple(() =>
            {
                Assert.That(second, Is.EqualTo(first), "the same guest gives the same JSON byte for byte");
                Assert.That(File.ReadAllText(Path.Combine(directory, "converted.json")), Is.EqualTo(first), "trace convert of the text trace");
                Assert.That(() => JsonDocument.Parse(first).Dispose(), Throws.Nothing);
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public void TraceConvertOfAMissingFileIs66AndOneLine()
    {
        string missing = Path.Combine(Path.GetTempPath(), $"hybridvmm-missing-{Guid.NewGuid():N}.trace");
        CliProcess.Result result = CliProcess.Run("trace", "convert", missing, missing + ".json");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.NoInput));
            Assert.That(result.Stderr, Does.StartWith($"hybridvmm: error: cannot read trace '{missing}'"));
            Assert.That(result.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(File.Exists(missing + ".json"), Is.False, "nothing is written for a refused input");
        });
    }

    private static async Task<string[]> TextTraceOf(string guest)
    {
        using var machine = new TestMachine();
        machine.Create(guest, Repository.ReadGuest(guest));
        await machine.RunAsync();
        return machine.TraceLines.ToArray();
    }

    private static async Task<string> ChromeTraceOf(string guest)
    {
        var json = new StringWriter { NewLine = "\n" };
        using (var writer = new ChromeTraceWriter(json))
        {
            foreach (string line in await TextTraceOf(guest))
            {
                writer.WriteLine(line);
            }
        }

        return json.ToString();
    }
}
