using HybridVmm.HostOS.Storage;

namespace HybridVmm.Cli.Common;

/// <summary>
/// Checks a file the host is about to read (an image, an initrd, a configuration, a snapshot) before it is opened:
/// it must exist, be a regular file (not a directory, a FIFO, a socket or a device such as /dev/zero) and be no
/// larger than a bound. Opening a FIFO would block until a writer comes, and reading a device would never end,
/// so the type is read from the path without opening it (<see cref="HostFile"/>).
/// </summary>
internal static class InputFile
{
    /// <summary>Why a path cannot be read as an input, with the exit status docs/exit-codes.md gives it.</summary>
    public sealed record Refusal(int Status, string Message);

    /// <summary>
    /// Null when <paramref name="path"/> is a regular file of at most <paramref name="maxBytes"/> bytes, else the refusal:
    /// 66 (<see cref="ExitStatus.NoInput"/>) when it does not exist, is a directory or is not a regular file,
    /// <paramref name="tooLargeStatus"/> when it is larger than the bound.
    /// </summary>
    public static Refusal? Check(string path, string what, long maxBytes, int tooLargeStatus, string? bound = null)
    {
        if (HostFile.NotRegular(path, what, out long size) is { } notRegular)
        {
            return new Refusal(ExitStatus.NoInput, notRegular);
        }

        return size > maxBytes
            ? new Refusal(tooLargeStatus, $"{what} '{path}' is too large: {size} bytes, more than {bound ?? $"the {maxBytes} bytes it may have"}")
            : null;
    }

    /// <summary>
    /// A disk image the host names (<c>--disk</c> of run, restore, receive and clone): null when it is a regular file,
    /// else the status after one message on <paramref name="stderr"/> ("is not a regular file" for /dev/zero).
    /// </summary>
    public static int? RefuseDiskImage(string path, TextWriter stderr)
    {
        if (Check(path, "disk image", long.MaxValue, ExitStatus.InvalidImage) is not { } refusal)
        {
            return null;
        }

        stderr.WriteLine($"hybridvmm: error: {refusal.Message}");
        return refusal.Status;
    }
}
