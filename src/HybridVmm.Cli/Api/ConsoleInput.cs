using System.Collections.Concurrent;
using HybridVmm.HostOS.Devices;

namespace HybridVmm.Cli.Api;

/// <summary>
/// COM1's input from an attached API console: the bytes the client typed, queued for the UART, which takes them on
/// virtual time and hears "nothing yet" when none are waiting (an interactive source, as the terminal of <c>run</c>).
/// When the console detaches the input ends, and the UART stops asking.
/// </summary>
public sealed class ConsoleInput : ISerialInput
{
    /// <summary>At most this many typed bytes wait for the guest; a client that pastes more waits for room.</summary>
    public const int MaxPending = 64 * 1024;

    private readonly ConcurrentQueue<byte> _typed = new();
    private volatile bool _ended;

    public int Pending => _typed.Count;

    public void Type(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            _typed.Enqueue(b);
        }
    }

    public void End() => _ended = true;

    public SerialInputStatus Read(out byte value) =>
        _typed.TryDequeue(out value) ? SerialInputStatus.Byte
        : _ended ? SerialInputStatus.End
        : SerialInputStatus.NotYet;
}
