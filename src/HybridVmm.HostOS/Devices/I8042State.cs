using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>The 8042's saved state: its registers, the command waiting for data, and the bytes not yet read.</summary>
public sealed record I8042State(byte Status, byte CommandByte, byte OutputPort, byte LastOutput, byte PendingCommand,
    bool KeyboardExpectsArgument, byte[] Output);

/// <summary>
/// Chunk "device.i8042", version 1: status, command byte, output port, last byte read, pending command (one byte
/// each), whether the keyboard waits for an argument (a boolean), then the output bytes as a blob (at most 16).
/// </summary>
public sealed class I8042StateCodec : StateCodec<I8042State>
{
    public static readonly I8042StateCodec Instance = new();

    public override string StateName => "8042 keyboard controller";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, I8042State s)
    {
        w.WriteBytes([s.Status, s.CommandByte, s.OutputPort, s.LastOutput, s.PendingCommand]);
        w.WriteBoolean(s.KeyboardExpectsArgument);
        w.WriteBlob(s.Output);
    }

    public override I8042State Read(SavedStateReader r, int version) => new(
        r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadBoolean(), r.ReadBlob(16));
}
