using HybridVmm.Cli.Common;
using HybridVmm.Cli.Tracing;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Commands;

internal static class TraceFiles
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
            TextWriter file = new StreamWriter(path, append: false) { NewLine = "\n" };
            if (ChromeTraceWriter.IsJsonPath(path))
            {
                // FILE.json: the Chrome trace-event / Perfetto form of the same events (docs/trace-format.md).
                file = new ChromeTraceWriter(file);
            }

            var recorder = new TraceRecorder(file, maxBytes: HostOutput.TraceLimitBytes, name: $"trace file '{path}'");
            HostOutput.Register(recorder, path);
            return recorder;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            stderr.WriteLine($"hybridvmm: error: cannot write trace file '{path}': {e.Message}");
            return null;
        }
    }
}
