using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Commands;

internal static class TraceFiles
{
    /// <summary>A recorder writing to <paramref name="path"/>, a disabled one when no path is given, or null (after a message) when the file cannot be created.</summary>
    public static TraceRecorder? Open(string? path, TextWriter stderr)
    {
        if (string.IsNullOrEmpty(path))
        {
            return new TraceRecorder(null);
        }

        try
        {
            return new TraceRecorder(new StreamWriter(path, append: false) { NewLine = "\n" });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            stderr.WriteLine($"hybridvmm: error: cannot write trace file '{path}': {e.Message}");
            return null;
        }
    }
}
