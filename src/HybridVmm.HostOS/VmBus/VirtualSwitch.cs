namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// The root partition's virtual switch: it connects the guests' synthetic NICs and carries Ethernet frames
/// between them by destination MAC address; a broadcast or multicast frame goes to every other port. There is
/// no uplink to the host's network. A frame for a port whose guest has not opened its NIC, or whose receive
/// ring is full, is dropped and counted, as a real switch would.
/// </summary>
public sealed class VirtualSwitch
{
    private readonly List<SynthNetDevice> _ports = new();
    private readonly object _gate = new();

    public long Forwarded { get; private set; }

    public long Dropped { get; private set; }

    internal void Connect(SynthNetDevice port)
    {
        lock (_gate) _ports.Add(port);
    }

    internal void Disconnect(SynthNetDevice port)
    {
        lock (_gate) _ports.Remove(port);
    }

    /// <summary>Forwards a frame from <paramref name="source"/>; returns how many ports received it.</summary>
    internal int Forward(SynthNetDevice source, ReadOnlySpan<byte> frame)
    {
        SynthNetDevice[] ports;
        lock (_gate) ports = _ports.ToArray();
        bool broadcast = (frame[0] & 1) != 0; // the group bit of the destination MAC
        int delivered = 0;
        foreach (SynthNetDevice port in ports)
        {
            if (port == source || (!broadcast && !frame[..6].SequenceEqual(port.Mac)))
            {
                continue;
            }

            if (port.Receive(frame))
            {
                delivered++;
            }
            else
            {
                Dropped++;
            }
        }

        Forwarded += delivered;
        return delivered;
    }
}
