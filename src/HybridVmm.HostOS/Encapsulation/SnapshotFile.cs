namespace HybridVmm.HostOS.Encapsulation;

/// <summary>Reads and writes snapshot files. Writing is atomic: a crash mid-save never damages the previous file.</summary>
public static class SnapshotFile
{
    /// <summary>
    /// The largest snapshot file worth reading: every page of the largest guest (4 + 4096 bytes each) and the
    /// container's other chunks at their own limit. A larger file cannot be one this build wrote.
    /// </summary>
    public const long MaxBytes = (long)Hardware.Memory.GuestRam.MaxBytes / 4096 * (4 + 4096)
        + (long)Hardware.SavedState.SavedStateContainer.MaxChunks * SnapshotFormat.MaxStateChunkBytes;

    /// <summary>What a save or a restore holds of the file at a time: guest memory passes through in pieces of this size.</summary>
    public const int BufferBytes = 1 << 20;

    /// <summary>
    /// Writes to a temporary file beside <paramref name="path"/> (".NAME.PID.tmp"), flushes it to disk, then renames it
    /// over the target. A save that was killed leaves its temporary file behind: the next save of the same file
    /// deletes those whose process is gone (<see cref="RemoveStaleTemporaries"/>).
    /// </summary>
    public static void Write(string path, VmSnapshot snapshot)
    {
        string full = Path.GetFullPath(path);
        string temporary = TemporaryName(full, Environment.ProcessId);
        RemoveStaleTemporaries(full);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                // Chunk by chunk straight into the file; the buffer keeps the small chunks' writes cheap.
                var buffered = new BufferedStream(stream, BufferBytes); // not disposed: that would close the file before the fsync
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

    /// <summary>The temporary file a save of <paramref name="full"/> by process <paramref name="pid"/> writes first.</summary>
    public static string TemporaryName(string full, int pid) => Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{pid}.tmp");

    /// <summary>
    /// Deletes the temporary files of earlier saves of <paramref name="full"/> whose process no longer runs (a save
    /// killed by SIGKILL or a power cut), and returns their paths. A file whose process still runs may be a save
    /// under way, and is kept; so is anything that is not of the form ".NAME.PID.tmp".
    /// </summary>
    public static IReadOnlyList<string> RemoveStaleTemporaries(string full)
    {
        var removed = new List<string>();
        string directory = Path.GetDirectoryName(full)!;
        string prefix = $".{Path.GetFileName(full)}.";
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(directory, $"{prefix}*.tmp").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return removed;
        }

        foreach (string candidate in candidates)
        {
            string middle = Path.GetFileName(candidate)[prefix.Length..^".tmp".Length];
            if (!int.TryParse(middle, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)
                || pid == Environment.ProcessId || IsRunning(pid))
            {
                continue;
            }

            try
            {
                File.Delete(candidate);
                removed.Add(candidate);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Someone else's file, or already gone: it stays findable by its name.
            }
        }

        return removed;
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// Reads and verifies a snapshot file; null with a one-line reason on any problem. The checksum and every chunk
    /// are checked before it returns, in one pass over the file that holds one buffer (the memory chunk's page numbers
    /// are checked as the checksum is computed, <see cref="GuestMemoryScan"/>), plus reads of the small chunks; guest memory is left in the file, which
    /// stays open until the snapshot's <see cref="VmSnapshot.Memory"/> is disposed, and goes straight into the
    /// restored VM's RAM (<see cref="SnapshotFileMemory"/>), so a restore holds no copy of the guest's RAM.
    /// </summary>
    public static VmSnapshot? TryRead(string path, out string error)
    {
        FileStream? stream = null;
        VmSnapshot? snapshot;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, BufferBytes);
            snapshot = SnapshotFormat.TryRead(stream, out error, memoryInPlace: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stream?.Dispose();
            error = $"cannot read snapshot '{path}': {e.Message}";
            return null;
        }

        if (snapshot is null)
        {
            stream.Dispose();
            error = $"{path}: {error}";
        }
        else if (snapshot.Memory is not SnapshotFileMemory)
        {
            stream.Dispose(); // a version-2 file, read whole
        }

        return snapshot;
    }
}
