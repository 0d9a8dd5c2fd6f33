namespace HybridVmm.HostOS.Encapsulation;

/// <summary>Reads and writes snapshot files. Writing is atomic: a crash mid-save never damages the previous file.</summary>
public static class SnapshotFile
{
    /// <summary>
    /// The largest snapshot file worth reading: every page of the largest guest (4 + 4096 bytes each) and the
    /// container's other chunks at their own limit. A larger file cannot be one this build wrote.
    /// </summary>
    public const long MaxBytes = Hardware.Memory.HostPhysicalMemory.MaxBytes / 4096 * (4 + 4096)
        + (long)Hardware.SavedState.SavedStateContainer.MaxChunks * SnapshotFormat.MaxStateChunkBytes;

    /// <summary>Writes to a temporary file beside <paramref name="path"/>, flushes it to disk, then renames it over the target.</summary>
    public static void Write(string path, VmSnapshot snapshot)
    {
        string full = Path.GetFullPath(path);
        string temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                // Chunk by chunk straight into the file; the buffer keeps the small chunks' writes cheap.
                var buffered = new BufferedStream(stream, 1 << 16); // not disposed: that would close the file before the fsync
                SnapshotFormat.Write(buffered, snapshot);
                buffered.Flush();

                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>Reads and verifies a snapshot file; null with a one-line reason on any problem.</summary>
    public static VmSnapshot? TryRead(string path, out string error)
    {
        VmSnapshot? snapshot;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            snapshot = SnapshotFormat.TryRead(stream, out error);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"cannot read snapshot '{path}': {e.Message}";
            return null;
        }

        if (snapshot is null)
        {
            error = $"{path}: {error}";
        }

        return snapshot;
    }
}
