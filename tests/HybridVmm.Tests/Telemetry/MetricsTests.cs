using System.Diagnostics.Metrics;
using HybridVmm.HostOS.Telemetry;
using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Telemetry;

/// <summary>
/// The HybridVmm meter (docs/serve.md#metrics), read as dotnet-counters or OpenTelemetry would: with a MeterListener.
/// Its counters agree with the VM's own statistics, and every root round trip is one histogram measurement.
/// Not parallel with other fixtures: the meter is process-wide, and their machines would count too.
/// </summary>
[NonParallelizable]
public class MetricsTests
{
    [Test]
    public async Task TheMeterCountsInstructionsExitsMessagesVmsByStateAndEveryRootRoundTrip()
    {
        var longs = new List<(string Instrument, long Value, Dictionary<string, string> Tags)>();
        var ints = new List<(string Instrument, int Value, Dictionary<string, string> Tags)>();
        var durations = new List<(double Seconds, Dictionary<string, string> Tags)>();
        static Dictionary<string, string> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var all = new Dictionary<string, string>();
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                all[tag.Key] = tag.Value?.ToString() ?? "";
            }

            return all;
        }

        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == HybridVmmMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => longs.Add((instrument.Name, value, Tags(tags))));
        listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => ints.Add((instrument.Name, value, Tags(tags))));
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => durations.Add((value, Tags(tags))));
        listener.Start();

        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("metered", Repository.ReadGuest("hello"));
        await machine.RunAsync();
        listener.RecordObservableInstruments();

        long Counter(string instrument, string? kind = null) => longs
            .Where(m => m.Instrument == instrument && m.Tags["vm"] == "metered" && (kind is null || m.Tags["kind"] == kind))
            .Select(m => m.Value).Single();
        int rootIntercepts = machine.TraceLines.Count(l => l.Contains(" Intercept ", StringComparison.Ordinal) && l.EndsWith("-> root.intercepts", StringComparison.Ordinal));
        Assert.Multiple(() =>
        {
            Assert.That(Counter("hybridvmm.instructions"), Is.EqualTo(vm.Statistics.InstructionsRetired).And.GreaterThan(0));
            Assert.That(Counter("hybridvmm.channel.messages"), Is.EqualTo(vm.Statistics.ChannelMessages).And.GreaterThan(0));
            foreach ((string kind, long count) in vm.Statistics.InterceptsByKind)
            {
                Assert.That(Counter("hybridvmm.exits", kind), Is.EqualTo(count), kind);
            }

            Assert.That(Counter("hybridvmm.exits", "io-write"), Is.GreaterThan(10), "the hello guest writes to its UART");
            Assert.That(ints.Where(m => m.Instrument == "hybridvmm.vms").ToDictionary(m => m.Tags["state"], m => m.Value),
                Is.EquivalentTo(new Dictionary<string, int> { ["created"] = 0, ["running"] = 0, ["paused"] = 0, ["stopped"] = 1 }));
            Assert.That(durations.Count(d => d.Tags["vm"] == "metered"), Is.EqualTo(rootIntercepts).And.GreaterThan(50),
                "one round-trip measurement per intercept the root served");
            Assert.That(durations.All(d => d.Seconds >= 0), Is.True);
        });
    }

    [Test]
    public async Task WithoutAListenerNothingIsSampled()
    {
        // The meter costs nothing unless something listens: no instrument is enabled, so the round barrier samples nothing.
        using var machine = new TestMachine();
        machine.Create("quiet", Repository.ReadGuest("hello"));
        await machine.RunAsync();
        using var listener = new MeterListener();
        var seen = new List<string>();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == HybridVmmMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, _, tags, _) =>
        {
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Key == "vm")
                {
                    seen.Add((string)tag.Value!);
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.That(seen, Does.Not.Contain("quiet"), "a machine run while nothing listened was never sampled");
    }
}
