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
    private readonly TraceSink? _writer;
    private readonly Dictionary<int, TraceSink> _partitionWriters = new();
    private readonly long _maxBytes;
    private long _sequence;

    /// <param name="writer">Where the text form goes, or null to only count and keep events for inspection.</param>
    /// <param name="keepInMemory">Keeps every written line in <see cref="Lines"/> (tests and summaries).</param>
    /// <param name="maxBytes">The most each trace file may hold (0: no limit); see <see cref="LimitReached"/>.</param>
    /// <param name="name">What the writer is, for <see cref="Failure"/> (a file name).</param>
    /// <param name="rotate">With a limit: when the file reaches it, closes it and returns the writer of a new one (which has moved the
    /// old files aside, as logrotate does), so the latest events are always written; null: the file ends at the limit.</param>
    public TraceRecorder(TextWriter? writer, bool keepInMemory = false, long maxBytes = 0, string? name = null, Func<TextWriter>? rotate = null)
    {
        _maxBytes = maxBytes;
        _writer = writer is null ? null : new TraceSink(writer, name ?? "the trace") { Rotate = rotate };
        Lines = keepInMemory ? new List<string>() : null;
    }

    /// <summary>
    /// The first host I/O error on a trace file (a full disk, /dev/full), as "NAME: reason", or null. A failed file
    /// takes no more lines, the run goes on, and the caller reports it: a host's error is not a simulator bug.
    /// </summary>
    public string? Failure { get; private set; }

    /// <summary>A trace file reached its limit: it ends with a line saying so, and later events went to no file.</summary>
    public bool LimitReached { get; private set; }

    /// <summary>How many times a trace file reached its limit and went on in a new file (see the constructor's rotate).</summary>
    public int Rotations { get; private set; }

    public List<string>? Lines { get; }

    public bool Enabled => _writer is not null || Lines is not null || _partitionWriters.Count > 0;

    /// <summary>Also writes one partition's events to a file of its own (per-VM traces in <c>serve</c>).</summary>
    public void AddPartitionWriter(int partitionId, TextWriter writer, string? name = null, Func<TextWriter>? rotate = null)
    {
        lock (_gate)
        {
            _partitionWriters[partitionId] = new TraceSink(writer, name ?? $"the trace of partition {partitionId}") { Rotate = rotate };
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
                if (_writer is not null)
                {
                    Write(_writer, line);
                }

                Lines?.Add(line);
                if (_partitionWriters.TryGetValue(e.PartitionId, out TraceSink? own))
                {
                    Write(own, line);
                }
            }

            _pending.Clear();
            if (_writer is not null)
            {
                Guard(_writer, static w => w.Flush());
            }

            foreach (TraceSink own in _partitionWriters.Values)
            {
                Guard(own, static w => w.Flush());
            }
        }
    }

    public void Dispose()
    {
        Flush();
        lock (_gate)
        {
            if (_writer is not null)
            {
                Guard(_writer, static w => w.Dispose());
            }

            foreach (TraceSink own in _partitionWriters.Values)
            {
                Guard(own, static w => w.Dispose());
            }

            _partitionWriters.Clear();
        }
    }

    private void Write(TraceSink sink, string line)
    {
        if (sink.Closed)
        {
            return;
        }

        sink.Bytes += line.Length + 1;
        if (_maxBytes > 0 && sink.Bytes > _maxBytes && sink.Rotate is { } rotate && sink.Bytes > line.Length + 1)
        {
            // The file says where its events go on, is closed, moved aside, and a new one takes this line.
            Guard(sink, w => w.WriteLine($"# trace limit of {_maxBytes} bytes reached: later events are in the next file"));
            Guard(sink, static w => w.Dispose());
            if (sink.Failed)
            {
                return;
            }

            try
            {
                sink.Writer = rotate();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                sink.Failed = true;
                sink.Closed = true;
                Failure ??= $"{sink.Name}: cannot start the next file: {e.Message}";
                return;
            }

            Rotations++;
            sink.Bytes = line.Length + 1;
        }
        else if (_maxBytes > 0 && sink.Bytes > _maxBytes)
        {
            // The last line says why the file ends here; a reader never mistakes a capped trace for a whole one.
            Guard(sink, w => w.WriteLine($"# trace limit of {_maxBytes} bytes reached: later events are not written"));
            sink.Closed = true;
            LimitReached = true;
            return;
        }

        Guard(sink, w => w.WriteLine(line));
    }

    private void Guard(TraceSink sink, Action<TextWriter> action)
    {
        if (sink.Failed)
        {
            return;
        }

        try
        {
            action(sink.Writer);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            sink.Failed = true;
            sink.Closed = true;
            Failure ??= $"{sink.Name}: {(e.InnerException as IOException ?? e).Message}";
            try
            {
                sink.Writer.Dispose(); // it may throw again while it flushes what it holds
            }
            catch (Exception again) when (again is IOException or UnauthorizedAccessException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>One trace file: its writer, what it is called, how much it has taken, and whether it still takes lines.</summary>
    private sealed class TraceSink(TextWriter writer, string name)
    {
        public TextWriter Writer { get; set; } = writer;

        /// <summary>Opens the next file when this one is full, or null: the file ends at the limit.</summary>
        public Func<TextWriter>? Rotate { get; init; }

        public string Name { get; } = name;

        public long Bytes { get; set; }

        public bool Closed { get; set; }

        public bool Failed { get; set; }
    }
}
