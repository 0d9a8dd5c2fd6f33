using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Common;

/// <summary>
/// The host's own output: standard output and the trace files. A write that fails (a full disk, /dev/full, a
/// closed stdout) is the host's problem, not a simulator bug: the writer records it and takes no more, the run
/// goes on, and <see cref="Finish"/> reports it in one line with the status 73 (docs/exit-codes.md). It also
/// reports a trace that reached its size limit (<c>--trace-limit</c>).
/// </summary>
internal static class HostOutput
{
    private static readonly List<(TraceRecorder Recorder, string? Path)> Traces = new();
    private static readonly List<RawStreamConsole> Consoles = new();
    private static FailSafeWriter? _stdout;

    /// <summary>The most bytes a trace file may hold; 0 for no limit.</summary>
    public static long TraceLimitBytes { get; set; } = DefaultTraceLimitBytes;

    public const long DefaultTraceLimitBytes = 1L << 30;

    /// <summary>How many full trace files <c>--trace-rotate</c> keeps beside the one being written (0: none; the file ends at the limit).</summary>
    public static int TraceRotateKeep { get; set; }

    public const int MaxTraceRotate = 1000;

    /// <summary>Console.Out becomes a writer that records a failure instead of throwing it.</summary>
    public static void GuardStandardOutput()
    {
        _stdout = new FailSafeWriter(Console.Out);
        Console.SetOut(_stdout);
    }

    public static void Register(TraceRecorder recorder, string? path)
    {
        lock (Traces)
        {
            Traces.Add((recorder, path));
        }
    }

    /// <summary>The guest's raw COM1 bytes on stdout (run, restore, receive), recording a failure rather than throwing it.</summary>
    public static RawStreamConsole StandardOutputConsole()
    {
        var console = new RawStreamConsole(new BufferedStream(Console.OpenStandardOutput()));
        lock (Consoles)
        {
            Consoles.Add(console);
        }

        return console;
    }

    /// <summary>Reports what went wrong with the host's output; the status is 73 if a write failed, else <paramref name="status"/>.</summary>
    public static int Finish(int status, TextWriter stderr)
    {
        var failures = new List<string>();
        try
        {
            _stdout?.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // FailSafeWriter already recorded it.
        }

        if (_stdout?.Failure is { } stdoutFailure)
        {
            failures.Add($"standard output: {stdoutFailure}");
        }

        lock (Consoles)
        {
            foreach (RawStreamConsole console in Consoles)
            {
                console.Flush();
                if (console.Failure is { } failure && !failures.Contains($"standard output: {failure}"))
                {
                    failures.Add($"standard output: {failure}");
                }
            }
        }

        lock (Traces)
        {
            foreach ((TraceRecorder recorder, string? path) in Traces)
            {
                recorder.Dispose(); // idempotent: flushes what is left and closes the file
                if (recorder.Rotations > 0)
                {
                    stderr.WriteLine($"hybridvmm: {(path is null ? "a trace file" : $"trace file '{path}'")} reached its limit of {TraceLimitBytes} bytes {recorder.Rotations} time(s) (--trace-limit); it holds the latest events, and the {Math.Min(recorder.Rotations, TraceRotateKeep)} file(s) before it the ones that came before (--trace-rotate {TraceRotateKeep})");
                }

                if (recorder.LimitReached)
                {
                    stderr.WriteLine($"hybridvmm: warning: {(path is null ? "a trace file" : $"trace file '{path}'")} reached its limit of {TraceLimitBytes} bytes (--trace-limit); later events were not written");
                }

                if (recorder.Failure is { } failure)
                {
                    failures.Add(failure);
                }
            }
        }

        if (failures.Count == 0)
        {
            return status;
        }

        foreach (string failure in failures.Distinct())
        {
            stderr.WriteLine($"hybridvmm: error: cannot write {failure}");
        }

        return ExitStatus.CannotWrite;
    }

    /// <summary>A text writer that passes everything on until a write fails, then records the reason and drops the rest.</summary>
    private sealed class FailSafeWriter(TextWriter inner) : TextWriter
    {
        public override System.Text.Encoding Encoding => inner.Encoding;

        public override string NewLine
        {
            get => inner.NewLine;
#pragma warning disable CS8765 // TextWriter.NewLine's setter takes null as "\n"-less default; pass it on as is
            set => inner.NewLine = value;
#pragma warning restore CS8765
        }

        public string? Failure => _failure;

        private string? _failure;

        public override void Write(char value) => Guard(() => inner.Write(value));

        public override void Write(string? value) => Guard(() => inner.Write(value));

        public override void Write(char[] buffer, int index, int count) => Guard(() => inner.Write(buffer, index, count));

        public override void WriteLine(string? value) => Guard(() => inner.WriteLine(value));

        public override void WriteLine() => Guard(inner.WriteLine);

        public override void Flush() => Guard(inner.Flush);

        private void Guard(Action action) => HostWriteFailure.Guard(ref _failure, action);
    }
}
