using System.Collections.Concurrent;
using HybridVmm.HostOS.Devices;

namespace HybridVmm.Cli.Terminal;

/// <summary>
/// The keyboard as COM1's input: a thread reads the raw terminal (stdin) and queues what the guest should get, after
/// the console's escape keys (<see cref="ConsoleEscape"/>). The UART asks for bytes on virtual time and gets "nothing
/// yet" at once when none was typed, so when a key reaches the guest depends on the host: an interactive run is not
/// reproducible, and is not meant to be. At the terminal's end (a hang-up) the input ends; the guest keeps running.
/// </summary>
internal sealed class InteractiveSerialInput : ISerialInput
{
    private readonly ConcurrentQueue<byte> _typed = new();
    private readonly ConsoleEscape _escape = new();
    private readonly Action _quit;
    private readonly TextWriter _messages;
    private volatile bool _ended;

    /// <param name="quit">Called on the reader thread when the user types Ctrl-A x.</param>
    /// <param name="messages">Where the help goes (stderr).</param>
    public InteractiveSerialInput(Action quit, TextWriter messages)
    {
        _quit = quit;
        _messages = messages;
    }

    public bool QuitRequested { get; private set; }

    /// <summary>Starts reading the terminal (once it is in raw mode).</summary>
    public void Start()
    {
        var reader = new Thread(ReadTerminal) { IsBackground = true, Name = "console input" };
        reader.Start();
    }

    public SerialInputStatus Read(out byte value) =>
        _typed.TryDequeue(out value) ? SerialInputStatus.Byte
        : _ended ? SerialInputStatus.End
        : SerialInputStatus.NotYet;

    private void ReadTerminal()
    {
        Span<byte> buffer = stackalloc byte[256];
        while (!QuitRequested)
        {
            int read = Libc.ReadBytes(Libc.StdinFileno, buffer);
            if (read <= 0)
            {
                _ended = true;
                return;
            }

            foreach (byte key in buffer[..read])
            {
                switch (_escape.Feed(key, out byte send))
                {
                    case EscapeAction.Send:
                        _typed.Enqueue(send);
                        break;
                    case EscapeAction.Help:
                        _messages.Write("\r\n" + ConsoleEscape.Help);
                        _messages.Flush();
                        break;
                    case EscapeAction.Quit:
                        QuitRequested = true;
                        _quit();
                        return;
                }
            }
        }
    }
}
