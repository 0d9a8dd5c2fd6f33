using System.Runtime.InteropServices;

namespace HybridVmm.HostOS.Storage;

/// <summary>What a host path is, read with stat(2) without opening it.</summary>
public enum HostFileKind { Regular, Directory, Other }

/// <summary>
/// The type and size of a host file, read from its path without opening it (statx(2) on Linux): opening a FIFO
/// blocks until a writer comes, and reading a device such as /dev/zero never ends, so a file the host is about to
/// read or use as a disk is checked first. The CLI's input checks and <see cref="RootPartition.Prepare"/> share it.
/// </summary>
public static class HostFile
{
    /// <summary>False with the reason ("no such file") when the path cannot be examined; else its kind and size.</summary>
    public static bool TryStat(string path, out HostFileKind kind, out long size, out string? error)
    {
        kind = HostFileKind.Regular;
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
            kind = HostFileKind.Directory;
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

    /// <summary>
    /// Null when <paramref name="path"/> is a regular file, else why not, naming it as <paramref name="what"/>:
    /// "cannot read disk image 'X': no such file", "disk image 'X' is a directory", "... is not a regular file".
    /// </summary>
    public static string? NotRegular(string path, string what) => NotRegular(path, what, out _);

    /// <inheritdoc cref="NotRegular(string, string)"/>
    /// <param name="size">The regular file's size in bytes.</param>
    public static string? NotRegular(string path, string what, out long size)
    {
        if (!TryStat(path, out HostFileKind kind, out size, out string? error))
        {
            return $"cannot read {what} '{path}': {error}";
        }

        return kind switch
        {
            HostFileKind.Directory => $"{what} '{path}' is a directory",
            HostFileKind.Other => $"{what} '{path}' is not a regular file",
            _ => null,
        };
    }

    // statx(2): its struct has the same layout on every Linux architecture, unlike struct stat.
    // stx_mode is a u16 at offset 28, stx_size a u64 at offset 40; the struct is 256 bytes.
    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1, StatxSize = 0x200;
    private const int StatxBytes = 256, ModeOffset = 28, SizeOffset = 40;
    private const int FileTypeMask = 0xF000, RegularFile = 0x8000, DirectoryFile = 0x4000;

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, [Out] byte[] statx);

    private static bool StatLinux(string path, out HostFileKind kind, out long size, out string? error)
    {
        byte[] buffer = new byte[StatxBytes];
        kind = HostFileKind.Regular;
        size = 0;
        if (Statx(AtFdCwd, path, 0, StatxType | StatxSize, buffer) != 0)
        {
            error = Marshal.GetLastPInvokeError() == 2 ? "no such file" : Marshal.GetLastPInvokeErrorMessage();
            return false;
        }

        int mode = BitConverter.ToUInt16(buffer, ModeOffset) & FileTypeMask;
        kind = mode == RegularFile ? HostFileKind.Regular : mode == DirectoryFile ? HostFileKind.Directory : HostFileKind.Other;
        size = (long)Math.Min(BitConverter.ToUInt64(buffer, SizeOffset), long.MaxValue);
        error = null;
        return true;
    }
}
