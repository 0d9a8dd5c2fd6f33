using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.VmBus;

/// <summary>The synthetic console's host-side state: its counters and the input not yet sent to the guest.</summary>
public sealed record SynthConsoleState(long BytesWritten, long Batches, byte[] Input);

/// <summary>Chunk "vmbus.channel.{relid}.synthcon", version 1: { i64 BytesWritten; i64 Batches; i32 Length; bytes Input }.</summary>
public sealed class SynthConsoleStateCodec : StateCodec<SynthConsoleState>
{
    public const int MaxInput = 1 << 20;

    public static readonly SynthConsoleStateCodec Instance = new();

    public override string StateName => "synthetic console";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, SynthConsoleState s)
    {
        w.WriteInt64(s.BytesWritten);
        w.WriteInt64(s.Batches);
        w.WriteBlob(s.Input);
    }

    public override SynthConsoleState Read(SavedStateReader r, int version) => new(r.ReadInt64(), r.ReadInt64(), r.ReadBlob(MaxInput));
}
