using System.Runtime.InteropServices;

namespace HybridVmm.Cli.Common;

/// <summary>
/// Checks a file the host is about to read (an image, an initrd, a configuration, a snapshot) before it is opened:
/// it must exist, be a regular file (not a directory, a FIFO, a socket or a device such as /dev/zero) and be no
/// larger than a bound. Opening a FIFO would block until a writer comes, and reading a device would never end,
/// so the type is read with stat(2) (statx on Linux) from the path, without opening it.
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
        if (!TryStat(path, out FileKind kind, out long size, out string? error))
        {
            return new Refusal(ExitStatus.NoInput, $"cannot read {what} '{path}': {error}");
        }

        return kind switch
        {
            FileKind.Directory => new Refusal(ExitStatus.NoInput, $"{what} '{path}' is a directory"),
            FileKind.Other => new Refusal(ExitStatus.NoInput, $"{what} '{path}' is not a regular file"),
            _ when size > maxBytes => new Refusal(tooLargeStatus, $"{what} '{path}' is too large: {size} bytes, more than {bound ?? $"the {maxBytes} bytes it may have"}"),
            _ => null,
        };
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

    private enum FileKind { Regular, Directory, Other }

    private static bool TryStat(string path, out FileKind kind, out long size, out string? error)
    {
        kind = FileKind.Regular;
        size = 0;
        error = null;
        if (path.Length == 0)
        {
            error = "no path was given";
            return false;
        }

        if (OperatingSystem.IsLinux())
        {
            try
            {
                return StatLinux(path, out kind, out size, out error);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // A libc without statx(2): fall back on what .NET can tell.
            }
        }

        if (Directory.Exists(path))
        {
            kind = FileKind.Directory;
            return true;
        }

        var info = new FileInfo(path);
        if (!info.Exists)
        {
            error = "no such file";
            return false;
        }

        size = info.Length;
        return true;
    }

    // statx(2): its struct has the same layout on every Linux architecture, unlike struct stat.
    // stx_mode is a u16 at offset 28, stx_size a u64 at offset 40; the struct is 256 bytes.
    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1, StatxSize = 0x200;
    private const int StatxBytes = 256, ModeOffset = 28, SizeOffset = 40;
    private const int FileTypeMask = 0xF000, RegularFile = 0x8000, DirectoryFile = 0x4000;

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, [Out] byte[] statx);

    private static bool StatLinux(string path, out FileKind kind, out long size, out string? error)
    {
        byte[] buffer = new byte[StatxBytes];
        kind = FileKind.Regular;
        size = 0;
        if (Statx(AtFdCwd, path, 0, StatxType | StatxSize, buffer) != 0)
        {
            error = Marshal.GetLastPInvokeError() == 2 ? "no such file" : Marshal.GetLastPInvokeErrorMessage();
            return false;
        }

        int mode = BitConverter.ToUInt16(buffer, ModeOffset) & FileTypeMask;
        kind = mode == RegularFile ? FileKind.Regular : mode == DirectoryFile ? FileKind.Directory : FileKind.Other;
        size = (long)Math.Min(BitConverter.ToUInt64(buffer, SizeOffset), long.MaxValue);
        error = null;
        return true;
    }
}
