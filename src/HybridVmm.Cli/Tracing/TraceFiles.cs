using HybridVmm.Cli.Common;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Tracing;

public static class TraceFiles
{
    /// <summary>A recorder writing to <paramref name="path"/>, a disabled one when no path is given, or null (after a message) when the file cannot be created.</summary>
    public static TraceRecorder? Open(string? path, TextWriter stderr)
    {
        if (string.IsNullOrEmpty(path))
        {
            // No machine-wide file, but serve may add per-VM ones: they take the same limit and report the same way.
            var none = new TraceRecorder(null, maxBytes: HostOutput.TraceLimitBytes);
            HostOutput.Register(none, null);
            return none;
        }

        try
        {
            var recorder = new TraceRecorder(Create(path), maxBytes: HostOutput.TraceLimitBytes, name: $"trace file '{path}'", rotate: Rotation(path));
            HostOutput.Register(recorder, path);
            return recorder;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            stderr.WriteLine($"hybridvmm: error: cannot write trace file '{path}': {e.Message}");
            return null;
        }
    }

    /// <summary>A new trace file at <paramref name="path"/>: the text form, or for FILE.json the Chrome trace-event / Perfetto form of the same events (docs/trace-format.md).</summary>
    public static TextWriter Create(string path)
    {
        TextWriter file = new StreamWriter(path, append: false) { NewLine = "\n" };
        return ChromeTraceWriter.IsJsonPath(path) ? new ChromeTraceWriter(file) : file;
    }

    /// <summary>
    /// With <c>--trace-rotate N</c>: what starts the next file at <paramref name="path"/> once the full one is closed, after
    /// moving the full ones aside as logrotate does (trace.txt to trace.1.txt, trace.1.txt to trace.2.txt, ..., the
    /// one past N deleted); the extension stays last, so a rotated hello.json is still a .json file. Null without it.
    /// </summary>
    public static Func<TextWriter>? Rotation(string path)
    {
        int keep = HostOutput.TraceRotateKeep;
        if (keep == 0)
        {
            return null;
        }

        return () =>
        {
            File.Delete(Rotated(path, keep));
            for (int i = keep - 1; i >= 1; i--)
            {
                if (File.Exists(Rotated(path, i)))
                {
                    File.Move(Rotated(path, i), Rotated(path, i + 1), overwrite: true);
                }
            }

            File.Move(path, Rotated(path, 1), overwrite: true);
            return Create(path);
        };
    }

    /// <summary>The name of the <paramref name="age"/>-th older file: trace.txt, 2 → trace.2.txt; trace → trace.2.</summary>
    public static string Rotated(string path, int age)
    {
        string extension = Path.GetExtension(path);
        return $"{path[..^extension.Length]}.{age}{extension}";
    }
}
