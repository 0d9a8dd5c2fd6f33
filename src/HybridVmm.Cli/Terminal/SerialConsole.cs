using HybridVmm.Cli.Common;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.Cli.Terminal;

/// <summary>
/// Where COM1's input comes from for a foreground run (<c>run</c>, <c>restore</c>), as QEMU's <c>-serial stdio</c>:
/// <list type="bullet">
/// <item><c>--serial-input FILE</c>, or <c>-</c> with stdin not a terminal: the bytes of the file or pipe, delivered
/// deterministically (the VM waits for each one), so the same guest and input give the same run and trace;</item>
/// <item>no option (or <c>-</c>) with stdin a terminal: the keyboard, in raw mode, with Ctrl-A x to quit; idle virtual
/// time then passes at the host's pace (<see cref="Hypervisor.Scheduling.Scheduler.PaceIdleTimeToHost"/>);</item>
/// <item>no option with stdin not a terminal: no input, as before (a script or a test that leaves stdin open never
/// makes a guest wait for it).</item>
/// </list>
/// </summary>
internal sealed class SerialConsole : IDisposable
{
    private readonly StreamSerialInput? _stream;
    private readonly InteractiveSerialInput? _keyboard;
    private readonly CancellationTokenSource _quit = new();
    private RawTerminal? _raw;

    private SerialConsole(StreamSerialInput? stream, TextWriter stderr)
    {
        _stream = stream;
        _keyboard = stream is null ? new InteractiveSerialInput(_quit.Cancel, stderr) : null;
    }

    /// <summary>True on a terminal: keys typed, raw mode, escape keys.</summary>
    public bool Interactive => _keyboard is not null;

    /// <summary>The user typed Ctrl-A x.</summary>
    public bool QuitRequested => _keyboard?.QuitRequested == true;

    /// <summary>Cancelled when the user quits from the console.</summary>
    public CancellationToken QuitToken => _quit.Token;

    /// <summary>
    /// Opens the input <paramref name="path"/> names (null: the terminal if stdin is one). False, with the message
    /// written and the exit status, when a file cannot be read; true with a null console when there is no input.
    /// </summary>
    public static bool TryOpen(string? path, TextWriter stderr, out SerialConsole? console, out int status)
    {
        console = null;
        status = ExitStatus.Success;
        bool stdinIsTerminal = Libc.IsTerminal(Libc.StdinFileno);
        if (path is null && !stdinIsTerminal)
        {
            return true;
        }

        if (path is null || (path == "-" && stdinIsTerminal))
        {
            console = new SerialConsole(null, stderr);
            return true;
        }

        try
        {
            Stream stream = path == "-"
                ? Console.OpenStandardInput()
                : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1);
            console = new SerialConsole(new StreamSerialInput(stream), stderr);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            stderr.WriteLine($"hybridvmm: error: cannot read the serial input '{path}': {e.Message}");
            status = ExitStatus.NoInput;
            return false;
        }
    }

    /// <summary>
    /// Connects the input to the VM's COM1. On a terminal, also switches it to raw mode, starts reading keys and paces
    /// idle virtual time to the host's clock. Call before the VM starts.
    /// </summary>
    public void Attach(VirtualMachine vm, HybridSystem system, TextWriter stderr)
    {
        if (_stream is not null)
        {
            vm.Com1.ConnectInput(_stream);
            return;
        }

        _raw = RawTerminal.Enter(out string? error);
        if (_raw is null)
        {
            stderr.WriteLine($"hybridvmm: warning: the terminal cannot be put in raw mode ({error}); COM1 gets no input.");
            return;
        }

        stderr.Write("hybridvmm: COM1 is this terminal; Ctrl-A x quits, Ctrl-A h lists the keys.\r\n");
        vm.Com1.ConnectInput(_keyboard!);
        system.Kernel.Scheduler.PaceIdleTimeToHost = true;
        _keyboard!.Start();
    }

    /// <summary>
    /// Moves the input to the VM that replaced the one it was attached to (a reboot, <c>run --reboot</c>): bytes the old
    /// VM's UART had taken but its guest had not read are lost, as on a PC whose reset clears the UART.
    /// </summary>
    public void MoveTo(VirtualMachine vm)
    {
        if (_stream is not null)
        {
            vm.Com1.ConnectInput(_stream);
        }
        else if (_raw is not null)
        {
            vm.Com1.ConnectInput(_keyboard!);
        }
    }

    /// <summary>Ends a file or pipe input now: a worker waiting for its next byte goes on (a run being cancelled).</summary>
    public void EndInput() => _stream?.Close();

    /// <summary>Puts the terminal back as it was and ends a file or pipe input.</summary>
    public void Dispose()
    {
        _raw?.Dispose();
        EndInput();
    }
}
