using System.Buffers.Binary;
using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// A synthetic NIC: one port of the root's <see cref="VirtualSwitch"/>. Guest to host: SEND { u32 Op = 1;
/// u32 Length; frame } and GET_MAC { u32 Op = 3 } (answered by a completion { u32 Status; u8 Mac[6] }).
/// Host to guest: RECEIVE { u32 Op = 2; u32 Length; frame }. Frames are Ethernet II, 14 to 1514 bytes.
/// </summary>
public sealed class SynthNetDevice : IVmBusDevice, ISaveRestore<SynthNetState>
{
    public static readonly Guid Interface = new("f8615163-df3e-46c5-913f-f2d2f965ed0e");

    public const uint OpSend = 1, OpReceive = 2, OpGetMac = 3;
    public const int MinFrame = 14, MaxFrame = 1514;

    private readonly VirtualSwitch _switch;
    private VmBusChannel? _channel;

    public SynthNetDevice(VirtualSwitch virtualSwitch, byte[] mac)
    {
        _switch = virtualSwitch;
        Mac = mac;
        virtualSwitch.Connect(this);
    }

    public string Name => "synthnet";

    public Guid InterfaceId => Interface;

    public byte[] Mac { get; }

    public long FramesSent { get; private set; }

    public long FramesReceived { get; private set; }

    public void Opened(VmBusChannel channel) => _channel = channel;

    public void Reattached(VmBusChannel channel) => _channel = channel.IsOpen ? channel : null;

    public StateCodec<SynthNetState> StateCodec => SynthNetStateCodec.Instance;

    /// <summary>The MAC travels with the VM, as a NIC's address does, with the frame counters.</summary>
    public SynthNetState Save() => new(Mac.ToArray(), FramesSent, FramesReceived);

    public bool Restore(SynthNetState state)
    {
        if (state.Mac.Length != Mac.Length)
        {
            return false;
        }

        state.Mac.CopyTo(Mac, 0);
        FramesSent = state.FramesSent;
        FramesReceived = state.FramesReceived;
        return true;
    }

    public void Disconnect() => _switch.Disconnect(this);

    public void Serve(VmBusChannel channel)
    {
        while (channel.Outbound!.TryRead(out PacketDescriptor d, out byte[] p, out _))
        {
            channel.Packets++;
            uint op = p.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(p) : 0;
            uint status = 1;
            if (op == OpSend && p.Length >= 8)
            {
                uint length = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(4));
                if (length is >= MinFrame and <= MaxFrame && length <= p.Length - 8)
                {
                    ReadOnlySpan<byte> frame = p.AsSpan(8, (int)length);
                    FramesSent++;
                    int ports = _switch.Forward(this, frame);
                    channel.Trace($"send {Describe(frame)} -> {ports} port(s)");
                    status = 0;
                }
            }
            else if (op == OpGetMac)
            {
                status = 0;
            }

            if (status != 0) channel.Trace($"bad request ({p.Length} bytes)");
            if ((d.Flags & PacketDescriptor.CompletionRequested) != 0)
            {
                byte[] completion = new byte[12];
                BinaryPrimitives.WriteUInt32LittleEndian(completion, status);
                Mac.CopyTo(completion, 4);
                channel.Send(PacketDescriptor.Completion, 0, d.TransactionId, completion);
            }
        }
    }

    /// <summary>The switch hands this port a frame: it goes into the guest's receive ring, and the guest is signalled.</summary>
    internal bool Receive(ReadOnlySpan<byte> frame)
    {
        VmBusChannel? channel = _channel;
        if (channel is null || !channel.IsOpen || channel.PartitionState == Hypervisor.Partitions.PartitionState.Stopped)
        {
            return false; // the port is down: nothing to trace on a guest that is not listening
        }

        if (!channel.Inbound!.HasRoomFor(8 + frame.Length))
        {
            channel.Trace($"drop {Describe(frame)} (receive ring full)");
            return false;
        }

        byte[] packet = new byte[8 + frame.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(packet, OpReceive);
        BinaryPrimitives.WriteUInt32LittleEndian(packet.AsSpan(4), (uint)frame.Length);
        frame.CopyTo(packet.AsSpan(8));
        channel.Send(PacketDescriptor.DataInband, 0, 0, packet);
        channel.FlushSignal();
        FramesReceived++;
        channel.Trace($"receive {Describe(frame)}");
        return true;
    }

    private static string Describe(ReadOnlySpan<byte> frame) =>
        $"{Convert.ToHexString(frame[6..12]).ToLowerInvariant()} > {Convert.ToHexString(frame[..6]).ToLowerInvariant()} type=0x{BinaryPrimitives.ReadUInt16BigEndian(frame[12..14]):x4} len={frame.Length}";
}
