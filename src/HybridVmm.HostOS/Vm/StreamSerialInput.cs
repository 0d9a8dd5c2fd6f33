using HybridVmm.HostOS.Devices;

namespace HybridVmm.HostOS.Vm;

/// <summary>
/// A deterministic serial input: the bytes of a stream (a file, a pipe), in order. A background thread reads the
/// stream ahead (up to <see cref="ReadAhead"/> bytes); <see cref="Read"/> waits for the next byte or the stream's
/// end, so the guest receives each byte at the same point of its run however fast the host writes the pipe.
/// <see cref="Close"/> ends the input at once (a cancelled run), releasing a <see cref="Read"/> that waits.
/// </summary>
public sealed class StreamSerialInput : ISerialInput, IDisposable
{
    /// <summary>How far the reader thread reads ahead of the guest.</summary>
    public const int ReadAhead = 64 * 1024;

    private readonly Stream _stream;
    private readonly object _gate = new();
    private readonly Queue<byte> _bytes = new();
    private bool _ended, _closed;

    public StreamSerialInput(Stream stream)
    {
        _stream = stream;
        var reader = new Thread(ReadStream) { IsBackground = true, Name = "serial input" };
        reader.Start();
    }

    /// <summary>Why the stream ended early, if a read failed; null at a normal end.</summary>
    public string? Error { get; private set; }

    /// <summary>Bytes handed to the guest so far.</summary>
    public long BytesDelivered { get; private set; }

    public SerialInputStatus Read(out byte value)
    {
        lock (_gate)
        {
            while (_bytes.Count == 0 && !_ended && !_closed)
            {
                Monitor.Wait(_gate);
            }

            if (_closed || !_bytes.TryDequeue(out value))
            {
                value = 0;
                return SerialInputStatus.End;
            }

            BytesDelivered++;
            Monitor.PulseAll(_gate); // room for the reader again
            return SerialInputStatus.Byte;
        }
    }

    /// <summary>Ends the input now: what is not yet delivered is dropped.</summary>
    public void Close()
    {
        lock (_gate)
        {
            _closed = true;
            Monitor.PulseAll(_gate);
        }
    }

    public void Dispose() => Close();

    private void ReadStream()
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                lock (_gate)
                {
                    while (_bytes.Count >= ReadAhead && !_closed)
                    {
                        Monitor.Wait(_gate);
                    }

                    if (_closed) return;
                }

                int read = _stream.Read(buffer, 0, buffer.Length);
                lock (_gate)
                {
                    if (read == 0)
                    {
                        _ended = true;
                        Monitor.PulseAll(_gate);
                        return;
                    }

                    for (int i = 0; i < read; i++) _bytes.Enqueue(buffer[i]);
                    Monitor.PulseAll(_gate);
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or UnauthorizedAccessException)
        {
            lock (_gate)
            {
                Error = e.Message;
                _ended = true;
                Monitor.PulseAll(_gate);
            }
        }
    }
}
