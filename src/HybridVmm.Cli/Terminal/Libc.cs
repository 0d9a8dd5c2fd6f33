using System.Runtime.InteropServices;

namespace HybridVmm.Cli.Terminal;

/// <summary>
/// The few POSIX terminal calls the serial console needs (termios(3), isatty(3), read(2)). A termios structure is
/// kept as opaque bytes, large enough for any libc's: only libc reads or changes it, except for the output flags
/// (<see cref="KeepOutputProcessing"/>), whose place is known on Linux.
/// </summary>
internal static class Libc
{
    public const int StdinFileno = 0;

    /// <summary>Bytes reserved for a struct termios (Linux's is 60, macOS's 72).</summary>
    public const int TermiosBytes = 256;

    private const int TcsaNow = 0;
    private const int Eintr = 4;

    // Linux's struct termios: c_iflag, c_oflag, ... (unsigned int each); OPOST and ONLCR in c_oflag.
    private const int LinuxOflagOffset = 4;
    private const uint Opost = 0x1, Onlcr = 0x4;

    // DllImport rather than LibraryImport: no source generator, so the architecture report's analysis (which compiles
    // each project without generated sources) resolves every name. The arrays are blittable and pinned, not copied.
    [DllImport("libc", EntryPoint = "isatty")]
    private static extern int IsATty(int fd);

    [DllImport("libc", EntryPoint = "tcgetattr", SetLastError = true)]
    private static extern int TcGetAttr(int fd, [Out] byte[] termios);

    [DllImport("libc", EntryPoint = "tcsetattr", SetLastError = true)]
    private static extern int TcSetAttr(int fd, int optionalActions, [In] byte[] termios);

    [DllImport("libc", EntryPoint = "cfmakeraw")]
    private static extern void CfMakeRaw([In, Out] byte[] termios);

    [DllImport("libc", EntryPoint = "read", SetLastError = true)]
    private static extern unsafe nint Read(int fd, byte* buffer, nint count);

    /// <summary>Whether <paramref name="fd"/> is a terminal. False wherever libc cannot be called (Windows).</summary>
    public static bool IsTerminal(int fd)
    {
        try
        {
            return !OperatingSystem.IsWindows() && IsATty(fd) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>The terminal's settings, or null (with the error) when they cannot be read.</summary>
    public static byte[]? GetAttributes(int fd, out string? error)
    {
        var termios = new byte[TermiosBytes];
        if (TcGetAttr(fd, termios) != 0)
        {
            error = Marshal.GetLastPInvokeErrorMessage();
            return null;
        }

        error = null;
        return termios;
    }

    public static bool SetAttributes(int fd, byte[] termios) => TcSetAttr(fd, TcsaNow, termios) == 0;

    /// <summary>A copy of <paramref name="termios"/> in raw mode (cfmakeraw: no echo, no line editing, no signals, 8 bits).</summary>
    public static byte[] MakeRaw(byte[] termios)
    {
        byte[] raw = (byte[])termios.Clone();
        CfMakeRaw(raw);
        return raw;
    }

    /// <summary>
    /// Turns output processing back on in a raw termios (as QEMU's stdio backend does), so that a guest's bare "\n"
    /// still starts a new line. Linux only; elsewhere the output stays raw.
    /// </summary>
    public static void KeepOutputProcessing(byte[] termios)
    {
        if (!OperatingSystem.IsLinux()) return;
        uint oflag = BitConverter.ToUInt32(termios, LinuxOflagOffset) | Opost | Onlcr;
        BitConverter.TryWriteBytes(termios.AsSpan(LinuxOflagOffset), oflag);
    }

    /// <summary>read(2) on <paramref name="fd"/>, retried when a signal interrupts it: bytes read, 0 at the end, -1 on an error.</summary>
    public static unsafe int ReadBytes(int fd, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = Read(fd, p, buffer.Length);
                if (n >= 0 || Marshal.GetLastPInvokeError() != Eintr) return (int)n;
            }
        }
    }
}
