using System.Threading.Channels;

namespace HybridVmm.Hypervisor.Messaging;

/// <summary>
/// A one-way message queue between partitions (a Hyper-V message port in spirit). It is bounded:
/// a sender that outruns the receiver waits, which is the backpressure the design relies on.
/// </summary>
public sealed class MessagePort<T>
{
    private readonly Channel<T> _channel;
    private long _sent;

    public MessagePort(string name, int capacity)
    {
        Name = name;
        Capacity = capacity;
        _channel = Channel.CreateBounded<T>(new BoundedChannelOptions(capacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
            SingleWriter = false,
        });
    }

    public string Name { get; }

    public int Capacity { get; }

    public long MessagesSent => Interlocked.Read(ref _sent);

    /// <summary>Sends, waiting while the port is full.</summary>
    public async ValueTask SendAsync(T message, CancellationToken cancellationToken = default)
    {
        await _channel.Writer.WriteAsync(message, cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _sent);
    }

    public bool TrySend(T message)
    {
        if (_channel.Writer.TryWrite(message))
        {
            Interlocked.Increment(ref _sent);
            return true;
        }

        return false;
    }

    public ValueTask<T> ReceiveAsync(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAsync(cancellationToken);

    public bool TryReceive(out T message) => _channel.Reader.TryRead(out message!);

    public IAsyncEnumerable<T> ReadAllAsync(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAllAsync(cancellationToken);

    public void Complete() => _channel.Writer.TryComplete();
}
