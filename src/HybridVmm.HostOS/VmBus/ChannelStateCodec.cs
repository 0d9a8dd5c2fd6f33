using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// Chunk "vmbus.channel.{relid}", version 1: { u32 RelId; string Device; u8 InstanceId[16]; bool Open; u32 Gpadl;
/// i32 InboundPageOffset; bool SignalPending; i64 Packets }. The device behind the channel saves its own state
/// in the chunk "vmbus.channel.{relid}.{device}" (<see cref="DeviceTag"/>); this codec leaves
/// <see cref="ChannelState.DeviceState"/> null.
/// </summary>
public sealed class ChannelStateCodec : StateCodec<ChannelState>
{
    public const int MaxDeviceName = 64;

    public static readonly ChannelStateCodec Instance = new();

    public override string StateName => "VMBus channel";

    public override int Version => 1;

    public static string Tag(uint relid) => $"vmbus.channel.{relid}";

    public static string DeviceTag(uint relid, string device) => $"vmbus.channel.{relid}.{device}";

    public override void Write(SavedStateWriter w, ChannelState c)
    {
        w.WriteUInt32(c.RelId);
        w.WriteString(c.Device);
        w.WriteBytes(c.InstanceId.ToByteArray());
        w.WriteBoolean(c.Open);
        w.WriteUInt32(c.Gpadl);
        w.WriteInt32(c.InboundPageOffset);
        w.WriteBoolean(c.SignalPending);
        w.WriteInt64(c.Packets);
    }

    public override ChannelState Read(SavedStateReader r, int version) => new(
        RelId: r.ReadUInt32(), Device: r.ReadString(MaxDeviceName), InstanceId: new Guid(r.ReadBytes(16)), Open: r.ReadBoolean(),
        Gpadl: r.ReadUInt32(), InboundPageOffset: r.ReadInt32(), SignalPending: r.ReadBoolean(), Packets: r.ReadInt64(), DeviceState: null);
}
