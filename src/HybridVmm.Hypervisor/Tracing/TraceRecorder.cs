namespace HybridVmm.Hypervisor.Tracing;

/// <summary>
/// Collects trace events from the kernel and the root partition and writes them in a deterministic order.
/// Events of one scheduling round are buffered and, at the round barrier, sorted by
/// (virtual time, partition, sequence): the order in which host threads happened to run never shows.
/// </summary>
public sealed class TraceRecorder : IDisposable
{
    private readonly object _gate = new();
    private readonly List<TraceEvent> _pending = new();
    private readonly Dictionary<int, string> _names = new();
    private readonly TextWriter? _writer;
    private readonly Dictionary<int, TextWriter> _partitionWriters = new();
    private long _sequence;

    /// <param name="writer">Where the text form goes, or null to only count and keep events for inspection.</param>
    /// <param name="keepInMemory">Keeps every written line in <see cref="Lines"/> (tests and summaries).</param>
    public TraceRecorder(TextWriter? writer, bool keepInMemory = false)
    {
        _writer = writer;
        Lines = keepInMemory ? new List<string>() : null;
    }

    public List<string>? Lines { get; }

    public bool Enabled => _writer is not null || Lines is not null || _partitionWriters.Count > 0;

    /// <summary>Also writes one partition's events to a file of its own (per-VM traces in <c>serve</c>).</summary>
    public void AddPartitionWriter(int partitionId, TextWriter writer)
    {
        lock (_gate)
        {
            _partitionWriters[partitionId] = writer;
        }
    }

    public void NamePartition(int partitionId, string name)
    {
        lock (_gate)
        {
            _names[partitionId] = name;
        }
    }

    public void Record(long virtualTime, int partitionId, int vpIndex, TraceKind kind, string details)
    {
        if (!Enabled)
        {
            return;
        }

        lock (_gate)
        {
            _pending.Add(new TraceEvent(virtualTime, partitionId, vpIndex, kind, details, _sequence++));
        }
    }

    /// <summary>Writes the buffered events in deterministic order. Called by the scheduler at each round barrier.</summary>
    public void Flush()
    {
        lock (_gate)
        {
            if (_pending.Count == 0)
            {
                return;
            }

            _pending.Sort(static (a, b) =>
            {
                int c = a.VirtualTime.CompareTo(b.VirtualTime);
                if (c == 0) c = a.PartitionId.CompareTo(b.PartitionId);
                return c != 0 ? c : a.Sequence.CompareTo(b.Sequence);
            });
            foreach (TraceEvent e in _pending)
            {
                string line = e.Format(_names.TryGetValue(e.PartitionId, out string? n) ? n : $"p{e.PartitionId}");
                _writer?.WriteLine(line);
                Lines?.Add(line);
                if (_partitionWriters.TryGetValue(e.PartitionId, out TextWriter? own))
                {
                    own.WriteLine(line);
                }
            }

            _pending.Clear();
            _writer?.Flush();
            foreach (TextWriter own in _partitionWriters.Values)
            {
                own.Flush();
            }
        }
    }

    public void Dispose()
    {
        Flush();
        _writer?.Dispose();
        lock (_gate)
        {
            foreach (TextWriter own in _partitionWriters.Values)
            {
                own.Dispose();
            }

            _partitionWriters.Clear();
        }
    }
}
