using System.Threading.Channels;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.Cli.Hosting;

/// <summary>
/// The guests' console as serve shows it (<see cref="Inner"/>: one prefixed line per guest line on stdout), plus, per
/// VM, the last <see cref="Capacity"/> bytes of its output in a ring buffer, which the API returns and replays to a
/// console that attaches later.
/// </summary>
public sealed class ConsoleRecorder(IGuestConsole inner, int capacity = ConsoleRecorder.DefaultCapacity) : IGuestConsole
{
    public const int DefaultCapacity = 64 * 1024;

    private readonly Dictionary<VirtualMachine, ByteRing> _rings = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<VirtualMachine, Tap> _taps = new(ReferenceEqualityComparer.Instance);

    public IGuestConsole Inner => inner;

    public int Capacity => capacity;

    public void Write(VirtualMachine vm, long virtualTime, byte value)
    {
        inner.Write(vm, virtualTime, value);
        lock (_rings)
        {
            if (!_rings.TryGetValue(vm, out ByteRing? ring))
            {
                _rings[vm] = ring = new ByteRing(capacity);
            }

            ring.Add(value);
            // An attached console that cannot keep up loses its oldest bytes, never the guest's time.
            if (_taps.Count > 0 && _taps.TryGetValue(vm, out Tap? tap))
            {
                tap.Channel.Writer.TryWrite(value);
            }
        }
    }

    /// <summary>
    /// Attaches a console to the VM's output: what the ring buffer holds now (to replay) and, from the next byte on,
    /// a reader of everything the VM writes, with no byte lost or doubled in between. One console per VM; dispose
    /// the tap to detach.
    /// </summary>
    public Tap Attach(VirtualMachine vm, out byte[] replay)
    {
        var tap = new Tap(this, vm, Channel.CreateBounded<byte>(new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true }));
        lock (_rings)
        {
            replay = _rings.TryGetValue(vm, out ByteRing? ring) ? ring.ToArray() : Array.Empty<byte>();
            _taps[vm] = tap;
        }

        return tap;
    }

    /// <summary>An attached console's view of the VM's output; it follows the VM across reboots (<see cref="Reboot"/>).</summary>
    public sealed class Tap(ConsoleRecorder recorder, VirtualMachine vm, Channel<byte> channel) : IDisposable
    {
        internal Channel<byte> Channel => channel;

        internal VirtualMachine Vm { get; set; } = vm;

        public ChannelReader<byte> Output => channel.Reader;

        public void Dispose()
        {
            lock (recorder._rings)
            {
                if (recorder._taps.TryGetValue(Vm, out Tap? current) && current == this)
                {
                    recorder._taps.Remove(Vm);
                }
            }

            channel.Writer.TryComplete();
        }
    }

    /// <summary>
    /// A VM booted again as <paramref name="next"/>: an attached console now reads the new boot's output, with nothing
    /// replayed twice, and with <paramref name="keepBacklog"/> (the guest reset the machine) its buffer goes on, as a
    /// serial line's output runs on across a reboot.
    /// </summary>
    public void Reboot(VirtualMachine old, VirtualMachine next, bool keepBacklog)
    {
        lock (_rings)
        {
            if (_rings.Remove(old, out ByteRing? ring) && keepBacklog)
            {
                _rings[next] = ring;
            }

            if (_taps.Remove(old, out Tap? tap))
            {
                tap.Vm = next;
                _taps[next] = tap;
            }
        }
    }

    public void Flush() => inner.Flush();

    /// <summary>What the VM has written that the buffer still holds, oldest first, and how many bytes it has written in all.</summary>
    public (byte[] Bytes, long Total) Read(VirtualMachine vm)
    {
        lock (_rings)
        {
            return _rings.TryGetValue(vm, out ByteRing? ring) ? (ring.ToArray(), ring.Total) : (Array.Empty<byte>(), 0);
        }
    }

    /// <summary>
    /// Starts a restored or migrated VM's buffer with the backlog its snapshot carried: what it wrote before, and how much
    /// in all, so its console replays that and its byte count goes on from there.
    /// </summary>
    public void Continue(VirtualMachine vm, (byte[] Bytes, long Total) backlog)
    {
        var ring = new ByteRing(capacity);
        ring.Continue(backlog.Bytes, backlog.Total);
        lock (_rings)
        {
            _rings[vm] = ring;
        }
    }

    /// <summary>Drops a deleted VM's buffer.</summary>
    public void Forget(VirtualMachine vm)
    {
        lock (_rings)
        {
            _rings.Remove(vm);
            if (_taps.Remove(vm, out Tap? tap))
            {
                tap.Channel.Writer.TryComplete();
            }
        }
    }

    private sealed class ByteRing(int capacity)
    {
        private readonly byte[] _bytes = new byte[capacity];

        public long Total { get; private set; }

        public void Add(byte value) => _bytes[Total++ % _bytes.Length] = value;

        /// <summary>Holds the last of <paramref name="bytes"/> as if they were the last written of <paramref name="total"/>.</summary>
        public void Continue(byte[] bytes, long total)
        {
            int keep = Math.Min(bytes.Length, _bytes.Length);
            Total = total - keep;
            foreach (byte value in bytes.AsSpan(bytes.Length - keep))
            {
                Add(value);
            }
        }

        public byte[] ToArray()
        {
            int count = (int)Math.Min(Total, _bytes.Length);
            byte[] copy = new byte[count];
            int start = (int)((Total - count) % _bytes.Length);
            int first = Math.Min(count, _bytes.Length - start);
            Array.Copy(_bytes, start, copy, 0, first);
            Array.Copy(_bytes, 0, copy, first, count - first);
            return copy;
        }
    }
}
