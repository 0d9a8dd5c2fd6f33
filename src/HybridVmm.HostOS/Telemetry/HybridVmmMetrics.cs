using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace HybridVmm.HostOS.Telemetry;

/// <summary>
/// The <c>HybridVmm</c> meter (System.Diagnostics.Metrics): what <c>dotnet-counters monitor --counters HybridVmm</c> and
/// OpenTelemetry read. Counters per VM (instructions retired, exits by kind, channel messages), VMs by state, and the
/// wall-clock latency of the root's side of an intercept round trip. The counters are read at the scheduler's round
/// barrier, where nothing changes them, and only while some listener has enabled an instrument; the metrics read the
/// simulation and never feed it, so traces and guest output stay as they are.
/// </summary>
public sealed class HybridVmmMetrics : IDisposable
{
    public const string MeterName = "HybridVmm";

    private static readonly Meter Meter = new(MeterName);
    private static readonly List<HybridVmmMetrics> Systems = new();

    private static readonly ObservableCounter<long> Instructions = Meter.CreateObservableCounter(
        "hybridvmm.instructions", () => Observe(static vm => [new Measurement<long>(vm.Instructions, Tag("vm", vm.Name))]),
        "{instruction}", "Guest instructions retired, per VM");

    private static readonly ObservableCounter<long> Exits = Meter.CreateObservableCounter(
        "hybridvmm.exits", () => Observe(static vm => vm.ExitsByKind.Select(e => new Measurement<long>(e.Value, Tag("vm", vm.Name), Tag("kind", e.Key)))),
        "{exit}", "Guest exits (intercepts) by kind, per VM: io-read, io-write, mmio-read, hlt, cpuid, hypercall, ...");

    private static readonly ObservableCounter<long> ChannelMessages = Meter.CreateObservableCounter(
        "hybridvmm.channel.messages", () => Observe(static vm => [new Measurement<long>(vm.ChannelMessages, Tag("vm", vm.Name))]),
        "{message}", "Messages between the guest and the root partition (intercepts and replies, VMBus), per VM");

    private static readonly ObservableUpDownCounter<int> VmsByState = Meter.CreateObservableUpDownCounter(
        "hybridvmm.vms", ObserveStates, "{vm}", "VMs by state: created, running, paused, stopped");

    /// <summary>The root's side of a round trip: from the root taking the intercept off the kernel's port to its reply.</summary>
    public static readonly Histogram<double> RootRoundTrip = Meter.CreateHistogram<double>(
        "hybridvmm.root.round_trip.duration", "s", "Wall-clock time from the root partition receiving an intercept to the reply that resumes the vCPU",
        tags: null,
        // A round trip takes microseconds: buckets from 1 µs to 1 s, not the milliseconds-to-seconds defaults of HTTP.
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2, 0.1, 1] });

    private readonly Func<VmSample[]> _sample;
    private volatile VmSample[] _latest = [];

    /// <param name="sample">Reads every VM's counters; called at a round barrier (see <see cref="Capture"/>).</param>
    public HybridVmmMetrics(Func<VmSample[]> sample)
    {
        _sample = sample;
        lock (Systems)
        {
            Systems.Add(this);
        }
    }

    /// <summary>Whether anything listens to the counters (then each round barrier samples them).</summary>
    private static bool Listened => Instructions.Enabled || Exits.Enabled || ChannelMessages.Enabled || VmsByState.Enabled;

    /// <summary>Samples now: on the scheduler thread at a round barrier, or once the machine has stopped running.</summary>
    public void Capture()
    {
        if (Listened)
        {
            _latest = _sample();
        }
    }

    public void Dispose()
    {
        lock (Systems)
        {
            Systems.Remove(this);
        }
    }

    private static IEnumerable<Measurement<long>> Observe(Func<VmSample, IEnumerable<Measurement<long>>> measure)
    {
        var all = new List<Measurement<long>>();
        foreach (VmSample vm in Samples())
        {
            all.AddRange(measure(vm));
        }

        return all;
    }

    private static IEnumerable<Measurement<int>> ObserveStates()
    {
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal) { ["created"] = 0, ["running"] = 0, ["paused"] = 0, ["stopped"] = 0 };
        foreach (VmSample vm in Samples())
        {
            counts[vm.State]++;
        }

        return counts.Select(c => new Measurement<int>(c.Value, Tag("state", c.Key))).ToArray();
    }

    private static List<VmSample> Samples()
    {
        lock (Systems)
        {
            return Systems.SelectMany(s => s._latest).ToList();
        }
    }

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);

    /// <summary>Records one root round trip that started at <paramref name="startTimestamp"/> (Stopwatch ticks).</summary>
    internal static void RecordRoundTrip(long startTimestamp, string vm) =>
        RootRoundTrip.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, new KeyValuePair<string, object?>("vm", vm));
}

/// <summary>One VM's counters for the meter: <paramref name="State"/> is created, running, paused or stopped.</summary>
public sealed record VmSample(string Name, string State, long Instructions, long ChannelMessages, KeyValuePair<string, long>[] ExitsByKind);
