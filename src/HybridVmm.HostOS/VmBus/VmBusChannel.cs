using HybridVmm.Hardware.SavedState;
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
    private uint _gpadl;
    private int _inboundPageOffset;

    internal VmBusChannel(RootPartitionApi api, PartitionHandle partition, uint relid, Guid instanceId, IVmBusDevice device)
    {
        _api = api;
        Partition = partition;
        RelId = relid;
        InstanceId = instanceId;
        Device = device;
    }

    public PartitionHandle Partition { get; }

    /// <summary>The run state of the guest on the other end (stopped once it is deleted).</summary>
    public Hypervisor.Partitions.PartitionState PartitionState => _api.State(Partition);

    public uint RelId { get; }

    public uint ConnectionId => VmBusProtocol.ChannelConnectionBase + RelId;

    public Guid InstanceId { get; private set; }

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
        _gpadl = gpadl;
        _inboundPageOffset = inboundPageOffset;
        return true;
    }

    internal void Close()
    {
        Outbound = Inbound = null;
        _gpadl = 0;
        _inboundPageOffset = 0;
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

    /// <summary>The tag of this channel's device state: "vmbus.channel.{relid}.{device}".</summary>
    public string DeviceStateTag => ChannelStateCodec.DeviceTag(RelId, Device.Name);

    /// <summary>The channel as a value: open or not, where its rings are, and its device's host-side state (if it has any).</summary>
    public ChannelState SaveState() =>
        new(RelId, Device.Name, InstanceId, IsOpen, _gpadl, _inboundPageOffset, _signalPending, Packets, (Device as IPersistentState)?.SaveChunk(DeviceStateTag));

    /// <summary>
    /// Brings a channel of a restored VM back to its saved state: reopened on the same GPADL (the kernel's grants
    /// are restored first) with no message to the guest, then the device's state. Null on success, else why not.
    /// </summary>
    internal string? RestoreState(ChannelState state)
    {
        if (state.RelId != RelId || state.Device != Device.Name)
        {
            return $"snapshot channel {state.RelId} ({state.Device}) does not match this VM's channel {RelId} ({Device.Name})";
        }

        if (state.Open && (state.InboundPageOffset >= 4096 || !Open(state.Gpadl, state.InboundPageOffset)))
        {
            return $"snapshot channel {RelId} ({Device.Name}) names GPADL {state.Gpadl} with inbound page {state.InboundPageOffset}, which its grants do not hold";
        }

        InstanceId = state.InstanceId;
        _signalPending = state.SignalPending;
        Packets = state.Packets;
        Device.Reattached(this);
        string refused = $"snapshot holds state for synthetic device '{Device.Name}' that this VM cannot take";
        return (Device as IPersistentState, state.DeviceState) switch
        {
            // A device without state takes no chunk, or an empty one (format version 2 saved empty bytes for it).
            (null, null) => null,
            (null, { } chunk) => chunk.Payload.Length == 0 ? null : refused,
            ({ }, null) => refused,
            ({ } persistent, { } chunk) when persistent.VersionRefusal(chunk) is { } version => $"{refused}: {version}",
            ({ } persistent, { } chunk) => persistent.RestoreChunk(chunk) ? null : refused,
        };
    }

    public void Trace(string details)
    {
        if (_api.Trace.Enabled)
        {
            _api.Trace.Record(_api.VmBusTime, Partition.Id, -1, TraceKind.VmBus, $"{Device.Name} relid={RelId} {details}");
        }
    }
}

/// <summary>
/// A channel's saved state: whether the guest has it open and, if so, the GPADL and inbound page offset its rings
/// live at (the ring indices and data are guest RAM), the pending host-to-guest signal, its packet count, and
/// the device's own state as its own chunk (null for a device without state). <see cref="ChannelStateCodec"/>
/// writes the channel's fields; the device's chunk is written beside it.
/// </summary>
public sealed record ChannelState(
    uint RelId,
    string Device,
    Guid InstanceId,
    bool Open,
    uint Gpadl,
    int InboundPageOffset,
    bool SignalPending,
    long Packets,
    SavedStateChunk? DeviceState);
