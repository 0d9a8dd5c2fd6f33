using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// One offered channel of one guest: relid, event connection, the device behind it and, once the guest has
/// opened it, its two rings inside the guest's GPADL: guest to host (<see cref="Outbound"/>) first, host to
/// guest (<see cref="Inbound"/>) from the page the open message names.
/// </summary>
public sealed class VmBusChannel
{
    private readonly RootPartitionApi _api;
    private bool _signalPending;

    internal VmBusChannel(RootPartitionApi api, Partition partition, uint relid, Guid instanceId, IVmBusDevice device)
    {
        _api = api;
        Partition = partition;
        RelId = relid;
        InstanceId = instanceId;
        Device = device;
    }

    public Partition Partition { get; }

    public uint RelId { get; }

    public uint ConnectionId => VmBusProtocol.ChannelConnectionBase + RelId;

    public Guid InstanceId { get; }

    public IVmBusDevice Device { get; }

    public bool IsOpen => Outbound is not null;

    public RingBuffer? Outbound { get; private set; }

    public RingBuffer? Inbound { get; private set; }

    /// <summary>Packets the device served in this channel's lifetime (both directions).</summary>
    public long Packets { get; internal set; }

    internal bool Open(uint gpadl, int inboundPageOffset)
    {
        long size = _api.GpadlSize(Partition, gpadl);
        int pages = (int)(size >> 12);
        // Each ring needs its control page and at least one data page.
        if (size < 0 || inboundPageOffset < 2 || pages - inboundPageOffset < 2)
        {
            return false;
        }

        Outbound = new RingBuffer(_api, Partition, gpadl, 0, inboundPageOffset);
        Inbound = new RingBuffer(_api, Partition, gpadl, (long)inboundPageOffset << 12, pages - inboundPageOffset);
        _api.CreateEventConnection(Partition, ConnectionId);
        return true;
    }

    internal void Close()
    {
        Outbound = Inbound = null;
        _api.DeleteEventConnection(Partition, ConnectionId);
    }

    /// <summary>Writes a packet to the guest; the guest is signalled once, when the server finishes the request.</summary>
    public bool Send(ushort type, ushort flags, ulong transactionId, ReadOnlySpan<byte> payload)
    {
        if (Inbound is null || !Inbound.TryWrite(type, flags, transactionId, payload))
        {
            return false;
        }

        Packets++;
        _signalPending = true;
        return true;
    }

    /// <summary>Host to guest signal: event flag relid on the VMBus SINT, unless the guest masked the ring.</summary>
    internal void FlushSignal()
    {
        if (Outbound is not null && Outbound.TakeWriterWaiting())
        {
            _signalPending = true; // the guest waits for room in its ring (VMBus pending_send_sz)
        }

        if (_signalPending && Inbound is not null && !Inbound.ReaderMasked)
        {
            _api.SignalGuestEvent(Partition, VmBusProtocol.MessageSint, (int)RelId);
        }

        _signalPending = false;
    }

    public void Trace(string details)
    {
        if (_api.Trace.Enabled)
        {
            _api.Trace.Record(_api.VmBusTime, Partition.Id, -1, TraceKind.VmBus, $"{Device.Name} relid={RelId} {details}");
        }
    }
}
