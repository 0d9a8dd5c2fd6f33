namespace HybridVmm.Cli.Terminal;

/// <summary>What a key typed on the interactive console does.</summary>
internal enum EscapeAction
{
    /// <summary>Nothing yet (the escape key, waiting for the next one) or an unknown escape, dropped.</summary>
    None,

    /// <summary>The byte goes to the guest.</summary>
    Send,

    /// <summary>Ctrl-A x: stop the guest and exit.</summary>
    Quit,

    /// <summary>Ctrl-A h (or ?): print the keys.</summary>
    Help,
}

/// <summary>
/// The console's escape keys, as QEMU's <c>-serial mon:stdio</c> has them: Ctrl-A, then x quits, h prints help, and a
/// second Ctrl-A sends one Ctrl-A to the guest. Every other key, Ctrl-C included, goes to the guest.
/// </summary>
internal sealed class ConsoleEscape
{
    public const byte EscapeKey = 0x01; // Ctrl-A

    public const string Help =
        "C-a h    print this help\r\n" +
        "C-a x    quit: stop the guest and exit hybridvmm (status 0)\r\n" +
        "C-a C-a  send C-a to the guest\r\n";

    private bool _escaped;

    /// <summary>Takes one typed byte; for <see cref="EscapeAction.Send"/>, <paramref name="send"/> is the byte for the guest.</summary>
    public EscapeAction Feed(byte key, out byte send)
    {
        send = key;
        if (!_escaped)
        {
            _escaped = key == EscapeKey;
            return _escaped ? EscapeAction.None : EscapeAction.Send;
        }

        _escaped = false;
        return key switch
        {
            EscapeKey => EscapeAction.Send,
            (byte)'x' => EscapeAction.Quit,
            (byte)'h' or (byte)'?' => EscapeAction.Help,
            _ => EscapeAction.None,
        };
    }
}
