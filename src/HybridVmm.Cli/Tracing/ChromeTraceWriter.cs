using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using HybridVmm.Hypervisor.Intercepts;

namespace HybridVmm.Cli.Tracing;

/// <summary>
/// Turns the text trace (docs/trace-format.md), line by line, into the Chrome trace-event JSON that ui.perfetto.dev and
/// chrome://tracing open: a process per partition (the root partition first), a thread per vCPU and per root worker,
/// exits and root round trips as slices, the messages between guest and root as flow arrows. It is a
/// <see cref="TextWriter"/> so that the trace recorder writes to it as to a text file (<c>--trace FILE.json</c>), and
/// <c>hybridvmm trace convert</c> feeds it an existing text trace. Time stays virtual (1 tick = 1 ns of the nominal
/// 1 GHz core); the output depends only on the lines, so the same run gives the same JSON byte for byte.
/// </summary>
public sealed class ChromeTraceWriter : TextWriter
{
    private const int RootPid = 1;
    private const int VmBusTid = 1;

    private readonly TextWriter _out;
    private readonly StringBuilder _line = new();
    private readonly Dictionary<string, int> _partitions = new(StringComparer.Ordinal);   // name -> pid
    private readonly HashSet<(int Pid, int Tid)> _threads = new();
    private readonly Dictionary<(int Pid, int Tid), PendingIntercept> _pending = new();
    private readonly Dictionary<int, (long Time, int Tid)> _lastHypercall = new();     // pid -> the guest's latest hypercall slice
    private (long Time, int Pid, int Tid)? _lastVmBus;                                   // the VMBus server's latest slice
    private readonly InterceptPhases _phases;
    private long _flowId;
    private bool _first = true;
    private bool _closed;

    /// <param name="output">Where the JSON goes; disposed with this writer.</param>
    /// <param name="costs">The cost model the run charged (the default one unless a host changed it): it places the
    /// phases of a root round trip inside the intercept's modelled cost.</param>
    public ChromeTraceWriter(TextWriter output, CrossingCostModel? costs = null)
    {
        _out = output;
        _phases = new InterceptPhases(costs ?? new CrossingCostModel());
        _out.Write("{\"displayTimeUnit\":\"ns\",\"otherData\":{\"generator\":\"hybridvmm\",\"clock\":\"virtual ticks; 1 tick = 1 ns of the nominal 1 GHz core\"},\n\"traceEvents\":[");
        Metadata(RootPid, 0, "process_name", "root partition (host OS)");
        Metadata(RootPid, 0, "process_sort_index", null, 0);
        Thread(RootPid, VmBusTid, "VMBus server");
    }

    public override Encoding Encoding => _out.Encoding;

    public override void Write(char value)
    {
        if (value == '\n')
        {
            Line(_line.ToString());
            _line.Clear();
        }
        else if (value != '\r')
        {
            _line.Append(value);
        }
    }

    public override void Write(string? value)
    {
        foreach (char c in value ?? "")
        {
            Write(c);
        }
    }

    public override void WriteLine(string? value)
    {
        Write(value);
        Write('\n');
    }

    public override void Flush() => _out.Flush();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_closed)
        {
            _closed = true;
            if (_line.Length > 0)
            {
                Line(_line.ToString());
                _line.Clear();
            }

            // Intercepts whose reply the trace does not hold (it ended first): a mark where each began.
            foreach (((int pid, int tid), PendingIntercept p) in _pending.OrderBy(e => e.Key.Pid).ThenBy(e => e.Key.Tid))
            {
                Instant(p.Time, pid, tid, p.Name, "exit", "t", ("details", p.Details), ("note", "the trace ends before the reply"));
            }

            _pending.Clear();
            _out.Write("\n]}\n");
            _out.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>One line of the text trace.</summary>
    private void Line(string line)
    {
        if (line.Length == 0)
        {
            return;
        }

        if (line.StartsWith('#'))
        {
            // "# trace limit of N bytes reached": said in the JSON too, so a cut trace is never mistaken for a whole one.
            Event($"{{\"name\":{Str(line.TrimStart('#', ' '))},\"ph\":\"i\",\"s\":\"g\",\"pid\":{RootPid},\"tid\":0,\"ts\":{Ts(_lastTime)}}}");
            return;
        }

        Match m = LineFormat.Match(line);
        if (!m.Success)
        {
            return; // not a trace line: nothing to draw
        }

        long time = long.Parse(m.Groups["time"].ValueSpan, CultureInfo.InvariantCulture);
        _lastTime = time;
        string partition = m.Groups["name"].Value;
        int pid = Partition(partition);
        int tid = m.Groups["vp"].Value == "-" ? 0 : int.Parse(m.Groups["vp"].ValueSpan, CultureInfo.InvariantCulture) + 1;
        if (tid > 0)
        {
            Thread(pid, tid, $"vCPU {tid - 1}");
        }

        string kind = m.Groups["kind"].Value;
        string details = m.Groups["details"].Value;
        switch (kind)
        {
            case "Intercept" when details.EndsWith(" -> root.intercepts", StringComparison.Ordinal):
                _pending[(pid, tid)] = new PendingIntercept(time, FirstWords(details), details[..^" -> root.intercepts".Length], partition);
                break;
            case "Message" when _pending.TryGetValue((pid, tid), out PendingIntercept? p) && details.StartsWith("root -> ", StringComparison.Ordinal):
                p.Worker = details["root -> ".Length..];
                break;
            case "Device" when _pending.TryGetValue((pid, tid), out PendingIntercept? p):
                p.Devices.Add(details);
                break;
            case "Message" when details.StartsWith("reply ", StringComparison.Ordinal) && _pending.Remove((pid, tid), out PendingIntercept? p):
                RoundTrip(pid, tid, p, details);
                break;
            case "Device":
            case "Message":
                // Root work outside a round trip (a device timer, an interrupt the root asserts): a mark on the guest's worker.
                Instant(time, RootPid, Worker(partition), FirstWords(details), kind.ToLowerInvariant(), "t", ("details", details));
                break;
            case "Lifecycle":
            case "Fault":
                Instant(time, pid, tid, $"{kind.ToLowerInvariant()}: {details}", kind.ToLowerInvariant(), tid == 0 ? "p" : "t", ("details", details));
                break;
            case "Hypercall":
            case "Msr":
                // Served by the kernel at the synthetic exit cost, without the root.
                Complete(time, _phases.SyntheticExit, pid, tid, FirstWords(details), kind.ToLowerInvariant(), ("details", details));
                if (kind == "Hypercall")
                {
                    _lastHypercall[pid] = (time, tid);
                }

                break;
            case "VmBus":
                // The root's VMBus server, stamped with the time of the guest's request: an arrow from that hypercall.
                Complete(time, 0, RootPid, VmBusTid, $"{partition}: {FirstWords(details)}", "vmbus", ("details", details));
                if (_lastHypercall.TryGetValue(pid, out var call) && call.Time == time)
                {
                    Flow(time, pid, call.Tid, time, RootPid, VmBusTid, "channel message");
                }

                _lastVmBus = (time, RootPid, VmBusTid);
                break;
            case "Synic":
                // A message or event toward the guest; from the VMBus server when it answers a request of this moment.
                Complete(time, 0, pid, tid, $"synic {FirstWords(details)}", "synic", ("details", details));
                if (_lastVmBus is { } vmbus && vmbus.Time == time)
                {
                    Flow(time, vmbus.Pid, vmbus.Tid, time, pid, tid, "channel message");
                }

                break;
            default:
                // Cpuid, hlt, in-kernel exits, refused grants: marks on the vCPU (or the partition).
                Instant(time, pid, tid, FirstWords(details), kind.ToLowerInvariant(), tid == 0 ? "p" : "t", ("details", details));
                break;
        }
    }

    private long _lastTime;

    /// <summary>
    /// An intercept the root served: the vCPU's slice is the intercept's whole modelled cost; inside it the message goes
    /// to the root, the guest's worker serves it (the device accesses), and the reply comes back: two arrows.
    /// </summary>
    private void RoundTrip(int pid, int tid, PendingIntercept p, string reply)
    {
        int workerTid = Worker(p.Partition);
        long t = p.Time;
        Complete(t, _phases.Total, pid, tid, p.Name, "exit", ("details", p.Details), ("reply", reply));
        string served = p.Devices.Count > 0 ? FirstWords(p.Devices[0]) : p.Name;
        Complete(t + _phases.ArrivesAtWorker, _phases.WorkerBusy, RootPid, workerTid, served, "root round trip",
            ("intercept", p.Details), ("device", string.Join("; ", p.Devices)), ("reply", reply));
        Flow(t + _phases.VmExit, pid, tid, t + _phases.ArrivesAtWorker, RootPid, workerTid, "intercept message");
        Flow(t + _phases.ReplySent, RootPid, workerTid, t + _phases.ReplyArrives, pid, tid, reply);
    }

    private int Partition(string name)
    {
        if (!_partitions.TryGetValue(name, out int pid))
        {
            pid = RootPid + 1 + _partitions.Count;
            _partitions[name] = pid;
            Metadata(pid, 0, "process_name", $"{name} (guest partition)");
            Metadata(pid, 0, "process_sort_index", null, pid);
            Thread(pid, 0, "partition");
        }

        return pid;
    }

    /// <summary>The root's worker thread for a guest: its tid is the guest's pid, so the order follows the partitions.</summary>
    private int Worker(string partition)
    {
        int tid = Partition(partition);
        Thread(RootPid, tid, $"worker.{partition}");
        return tid;
    }

    private void Thread(int pid, int tid, string name)
    {
        if (_threads.Add((pid, tid)))
        {
            Metadata(pid, tid, "thread_name", name);
            Metadata(pid, tid, "thread_sort_index", null, tid);
        }
    }

    private void Metadata(int pid, int tid, string what, string? name, int sortIndex = 0) =>
        Event(name is null
            ? $"{{\"name\":\"{what}\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"sort_index\":{sortIndex}}}}}"
            : $"{{\"name\":\"{what}\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":{Str(name)}}}}}");

    private void Complete(long time, long duration, int pid, int tid, string name, string category, params (string Key, string Value)[] args) =>
        Event($"{{\"name\":{Str(name)},\"cat\":\"{category}\",\"ph\":\"X\",\"pid\":{pid},\"tid\":{tid},\"ts\":{Ts(time)},\"dur\":{Ts(duration)}{Args(args)}}}");

    private void Instant(long time, int pid, int tid, string name, string category, string scope, params (string Key, string Value)[] args) =>
        Event($"{{\"name\":{Str(name)},\"cat\":\"{category}\",\"ph\":\"i\",\"s\":\"{scope}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{Ts(time)}{Args(args)}}}");

    /// <summary>A flow arrow (trace-event flow v1): it starts inside the slice enclosing its start, and ends bound to the slice enclosing its end.</summary>
    private void Flow(long from, int fromPid, int fromTid, long to, int toPid, int toTid, string name)
    {
        long id = ++_flowId;
        Event($"{{\"name\":{Str(name)},\"cat\":\"message\",\"ph\":\"s\",\"id\":{id},\"pid\":{fromPid},\"tid\":{fromTid},\"ts\":{Ts(from)}}}");
        Event($"{{\"name\":{Str(name)},\"cat\":\"message\",\"ph\":\"f\",\"bp\":\"e\",\"id\":{id},\"pid\":{toPid},\"tid\":{toTid},\"ts\":{Ts(to)}}}");
    }

    private void Event(string json)
    {
        _out.Write(_first ? "\n" : ",\n");
        _first = false;
        _out.Write(json);
    }

    /// <summary>Virtual ticks (ns) as the format's microseconds, exactly: no floating point, so no rounding differences.</summary>
    private static string Ts(long ticks) =>
        ticks % 1000 == 0
            ? (ticks / 1000).ToString(CultureInfo.InvariantCulture)
            : $"{ticks / 1000}.{ticks % 1000:000}".TrimEnd('0');

    private static string Str(string value) => JsonSerializer.Serialize(value);

    private static string Args((string Key, string Value)[] args)
    {
        if (args.Length == 0)
        {
            return "";
        }

        var text = new StringBuilder(",\"args\":{");
        for (int i = 0; i < args.Length; i++)
        {
            text.Append(i == 0 ? "" : ",").Append(Str(args[i].Key)).Append(':').Append(Str(args[i].Value));
        }

        return text.Append('}').ToString();
    }

    /// <summary>A slice's name: the details up to the first value (e.g. "io-write port=0x03f8"), without the long tail.</summary>
    private static string FirstWords(string details)
    {
        string[] words = details.Split(' ', 3);
        return words.Length >= 2 && !words[1].Contains("value", StringComparison.Ordinal) && words[1] != "->" ? $"{words[0]} {words[1]}" : words[0];
    }

    // "        5027 hello/0  Intercept io-write ..." : the name may hold spaces or slashes, so it is everything up to the last "/vp  ".
    private static readonly Regex LineFormat = new(@"^\s*(?<time>\d+) (?<name>.*)/(?<vp>\d+|-)  (?<kind>[A-Za-z]+) *(?<details>.*)$", RegexOptions.Compiled);

    /// <summary>A trace file named *.json gets this form; any other name the text form.</summary>
    public static bool IsJsonPath(string path) => path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);

    private sealed class PendingIntercept(long time, string name, string details, string partition)
    {
        public long Time { get; } = time;

        public string Name { get; } = name;

        public string Details { get; } = details;

        public string Partition { get; } = partition;

        public string? Worker { get; set; }

        public List<string> Devices { get; } = new();
    }

    /// <summary>
    /// Where the phases of a hybrid intercept fall inside its modelled cost (CrossingCostModel): the VM exit, the message
    /// to the root, the switch to the guest's worker, the emulation, the reply message and the switch back.
    /// </summary>
    private sealed class InterceptPhases(CrossingCostModel costs)
    {
        public long VmExit { get; } = costs.VmExitCycles;

        public long ArrivesAtWorker { get; } = costs.VmExitCycles + costs.MessageCycles + costs.ContextSwitchCycles;

        public long ReplySent { get; } = costs.VmExitCycles + costs.MessageCycles + costs.ContextSwitchCycles + costs.EmulationCycles;

        public long ReplyArrives { get; } = costs.VmExitCycles + 2 * costs.MessageCycles + costs.ContextSwitchCycles + costs.EmulationCycles;

        /// <summary>The worker emulates the access and posts the reply message.</summary>
        public long WorkerBusy => costs.EmulationCycles + costs.MessageCycles;

        public long Total { get; } = costs.For(DeviceHosting.Hybrid).Ticks;

        /// <summary>HypervisorOptions.SyntheticExitCostTicks, the default every command uses.</summary>
        public long SyntheticExit { get; } = 1_000;
    }
}
