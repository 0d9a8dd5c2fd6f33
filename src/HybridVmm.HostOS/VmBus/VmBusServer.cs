using System.Buffers.Binary;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// The root partition's VMBus server: it offers each guest the channels of its synthetic devices, opens them on
/// the guest's request, and routes the guest's signals to the device behind each channel. It is asynchronous,
/// built on the kernel's message ports: it takes requests from <see cref="RootPartitionApi.VmBusRequests"/> and
/// reports each one done, after which the kernel lets the guest run again.
/// </summary>
public sealed class VmBusServer
{
    private readonly RootPartitionApi _api;
    private readonly Dictionary<int, List<VmBusChannel>> _channels = new();
    private readonly object _gate = new();

    public VmBusServer(RootPartitionApi api) => _api = api;

    /// <summary>Registers the synthetic devices a guest will be offered, relids from 1 in this order.</summary>
    public IReadOnlyList<VmBusChannel> AddPartition(PartitionHandle partition, IEnumerable<IVmBusDevice> devices)
    {
        var list = new List<VmBusChannel>();
        uint relid = 1;
        foreach (IVmBusDevice device in devices)
        {
            // Instance GUIDs are deterministic: the interface GUID with the partition and relid mixed in.
            byte[] bytes = device.InterfaceId.ToByteArray();
            bytes[14] = (byte)partition.Id;
            bytes[15] = (byte)relid;
            list.Add(new VmBusChannel(_api, partition, relid++, new Guid(bytes), device));
        }

        lock (_gate)
        {
            _channels[partition.Id] = list;
        }

        return list;
    }

    public void RemovePartition(PartitionHandle partition)
    {
        lock (_gate)
        {
            _channels.Remove(partition.Id);
        }
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (VmBusRequest request in _api.VmBusRequests.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    Serve(request);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // A bug in a provider must not leave the kernel waiting at its barrier forever: report it
                    // in the trace and complete the request; the guest sees no answer on that channel.
                    Trace(request, $"internal error in the VMBus server: {e.GetType().Name}: {e.Message}");
                }

                await _api.CompleteVmBusRequestAsync(request, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Serves one request completely (the guest is stopped meanwhile).</summary>
    public void Serve(VmBusRequest request)
    {
        List<VmBusChannel>? channels;
        lock (_gate)
        {
            _channels.TryGetValue(request.PartitionId, out channels);
        }

        if (channels is null || channels.Count == 0)
        {
            Trace(request, "no VMBus devices: request dropped");
            return;
        }

        if (request.Kind == VmBusRequestKind.Signal)
        {
            foreach (VmBusChannel channel in channels)
            {
                if (channel.ConnectionId == request.ConnectionId && channel.IsOpen)
                {
                    channel.Device.Serve(channel);
                    channel.FlushSignal();
                }
            }

            return;
        }

        ServeMessage(request, channels);
    }

    private void ServeMessage(VmBusRequest request, List<VmBusChannel> channels)
    {
        PartitionHandle partition = channels[0].Partition;
        ReadOnlySpan<byte> m = request.Payload;
        if (request.MessageType != VmBusProtocol.HvMessageType || m.Length < VmBusProtocol.HeaderSize)
        {
            Trace(request, $"malformed message type={request.MessageType} size={m.Length}: ignored");
            return;
        }

        uint type = BinaryPrimitives.ReadUInt32LittleEndian(m);
        switch (type)
        {
            case VmBusProtocol.RequestOffers:
                Trace(request, $"request-offers -> {channels.Count} offers");
                Span<byte> offer = stackalloc byte[VmBusProtocol.OfferSize];
                foreach (VmBusChannel channel in channels)
                {
                    offer.Clear();
                    BinaryPrimitives.WriteUInt32LittleEndian(offer, VmBusProtocol.OfferChannel);
                    channel.Device.InterfaceId.TryWriteBytes(offer[8..]);
                    channel.InstanceId.TryWriteBytes(offer[24..]);
                    BinaryPrimitives.WriteUInt32LittleEndian(offer[40..], channel.RelId);
                    BinaryPrimitives.WriteUInt32LittleEndian(offer[44..], channel.ConnectionId);
                    _api.PostMessageToGuest(partition, VmBusProtocol.MessageSint, VmBusProtocol.HvMessageType, offer);
                }

                Span<byte> done = stackalloc byte[VmBusProtocol.HeaderSize];
                done.Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(done, VmBusProtocol.AllOffersDelivered);
                _api.PostMessageToGuest(partition, VmBusProtocol.MessageSint, VmBusProtocol.HvMessageType, done);
                break;

            case VmBusProtocol.OpenChannel when m.Length >= VmBusProtocol.OpenSize:
            {
                uint relid = BinaryPrimitives.ReadUInt32LittleEndian(m[8..]);
                uint openId = BinaryPrimitives.ReadUInt32LittleEndian(m[12..]);
                uint gpadl = BinaryPrimitives.ReadUInt32LittleEndian(m[16..]);
                uint inboundOffset = BinaryPrimitives.ReadUInt32LittleEndian(m[20..]);
                VmBusChannel? channel = Find(channels, relid);
                bool ok = channel is not null && !channel.IsOpen && inboundOffset < 4096 && channel.Open(gpadl, (int)inboundOffset);
                Trace(request, $"open relid={relid} gpadl={gpadl} inbound-page={inboundOffset} -> {(ok ? "opened" : "refused")}");
                Span<byte> result = stackalloc byte[VmBusProtocol.OpenResultSize];
                result.Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(result, VmBusProtocol.OpenChannelResult);
                BinaryPrimitives.WriteUInt32LittleEndian(result[8..], relid);
                BinaryPrimitives.WriteUInt32LittleEndian(result[12..], openId);
                BinaryPrimitives.WriteUInt32LittleEndian(result[16..], ok ? VmBusProtocol.OpenStatusSuccess : VmBusProtocol.OpenStatusInvalid);
                _api.PostMessageToGuest(partition, VmBusProtocol.MessageSint, VmBusProtocol.HvMessageType, result);
                if (ok)
                {
                    channel!.Device.Opened(channel);
                    channel.FlushSignal();
                }

                break;
            }

            case VmBusProtocol.CloseChannel when m.Length >= VmBusProtocol.HeaderSize + 4:
            {
                uint relid = BinaryPrimitives.ReadUInt32LittleEndian(m[8..]);
                Find(channels, relid)?.Close();
                Trace(request, $"close relid={relid}");
                break;
            }

            default:
                Trace(request, $"unknown or short channel message {type} size={m.Length}: ignored");
                break;
        }
    }

    private static VmBusChannel? Find(List<VmBusChannel> channels, uint relid)
    {
        foreach (VmBusChannel c in channels)
        {
            if (c.RelId == relid) return c;
        }

        return null;
    }

    private void Trace(VmBusRequest request, string details)
    {
        if (_api.Trace.Enabled)
        {
            _api.Trace.Record(request.VirtualTime, request.PartitionId, -1, TraceKind.VmBus, details);
        }
    }
}
