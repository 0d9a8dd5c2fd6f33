using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.VmBus;

/// <summary>A synthetic NIC's host-side state: its MAC address and frame counters.</summary>
public sealed record SynthNetState(byte[] Mac, long FramesSent, long FramesReceived);

/// <summary>Chunk "vmbus.channel.{relid}.synthnet", version 1: { u8 Mac[6]; i64 FramesSent; i64 FramesReceived }.</summary>
public sealed class SynthNetStateCodec : StateCodec<SynthNetState>
{
    public static readonly SynthNetStateCodec Instance = new();

    public override string StateName => "synthetic NIC";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, SynthNetState s)
    {
        w.WriteBytes(s.Mac);
        w.WriteInt64(s.FramesSent);
        w.WriteInt64(s.FramesReceived);
    }

    public override SynthNetState Read(SavedStateReader r, int version) => new(r.ReadBytes(6), r.ReadInt64(), r.ReadInt64());
}
