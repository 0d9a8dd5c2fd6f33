namespace HybridVmm.Cli.Common;

/// <summary>Reads a file the guest will get (a kernel image, an initrd) with a bound, so that a device such as /dev/zero or a huge file can never eat the host's memory.</summary>
internal static class GuestFile
{
    /// <summary>
    /// Reads at most <paramref name="maxBytes"/> bytes of <paramref name="path"/>. Returns null, and reports an exit status
    /// (66 missing, unreadable, a directory or not a regular file; 65 too large) and a one-line reason, when it cannot be read or is larger: the read stops one byte past the bound.
    /// </summary>
    /// <summary>
    /// An embedded guest by name, or else the file <paramref name="guest"/> read with <paramref name="maxBytes"/> as its bound
    /// (<c>clone</c>, <c>bench</c>, <c>compare-types</c>); null after a one-line message and with the status when neither.
    /// </summary>
    public static async Task<(byte[]? Image, int Status)> LoadGuestAsync(string guest, long maxBytes, TextWriter stderr, CancellationToken cancellationToken)
    {
        if (Guests.EmbeddedGuests.Load(guest) is { } embedded)
        {
            return (embedded, ExitStatus.Success);
        }

        if (!File.Exists(guest) && !Directory.Exists(guest))
        {
            stderr.WriteLine($"hybridvmm: error: no embedded guest or file named '{guest}'");
            return (null, ExitStatus.NoInput);
        }

        int status = ExitStatus.NoInput;
        byte[]? image = await ReadAsync(guest, maxBytes, "image", (s, message) =>
        {
            status = s;
            stderr.WriteLine($"hybridvmm: error: {message}");
        }, cancellationToken);
        return (image, image is null ? status : ExitStatus.Success);
    }

    public static async Task<byte[]?> ReadAsync(string path, long maxBytes, string what, Action<int, string> error, CancellationToken cancellationToken)
    {
        // A directory, a FIFO or a device is refused before it is opened: opening a FIFO blocks until a writer comes.
        if (InputFile.Check(path, what, maxBytes, ExitStatus.InvalidImage, $"the guest's {maxBytes >> 20} MiB of memory, so it cannot fit") is { } refusal)
        {
            error(refusal.Status, refusal.Message);
            return null;
        }

        try
        {
            await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
            using var buffer = new MemoryStream();
            byte[] chunk = new byte[1 << 16];
            while (true)
            {
                int read = await stream.ReadAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, maxBytes + 1 - buffer.Length)), cancellationToken);
                if (read == 0)
                {
                    return buffer.ToArray();
                }

                buffer.Write(chunk, 0, read);
                if (buffer.Length > maxBytes)
                {
                    error(ExitStatus.InvalidImage, $"{what} '{path}' is too large: more than the guest's {maxBytes >> 20} MiB of memory, so it cannot fit");
                    return null;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error(ExitStatus.NoInput, $"cannot read {what} '{path}': {e.Message}");
            return null;
        }
    }
}
