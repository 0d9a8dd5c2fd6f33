using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>A 16550's saved state: its registers and the received bytes the guest has not read yet.</summary>
public sealed record Uart16550State(byte Ier, byte Lcr, byte Mcr, byte Scr, byte Fcr, byte Dll, byte Dlm, byte[] Received, bool ThrInterruptPending = false);

/// <summary>
/// Chunk "device.com1", version 1: IER, LCR, MCR, SCR, FCR, DLL, DLM (one byte each), then the received bytes
/// to the end of the chunk (the layout format version 2 of the snapshot file had, so its state still loads).
/// </summary>
public sealed class Uart16550StateCodec : StateCodec<Uart16550State>
{
    /// <summary>The most received bytes a saved UART may hold (a loopback guest can queue them without reading).</summary>
    public const int MaxReceived = 1 << 20;

    public static readonly Uart16550StateCodec Instance = new();

    public override string StateName => "16550 UART";

    /// <summary>Version 2 adds the pending THRE interrupt (a byte before the received bytes); version 1 reads as none pending.</summary>
    public override int Version => 2;

    public override bool CanRead(int version) => version is 1 or 2;

    public override void Write(SavedStateWriter w, Uart16550State s)
    {
        w.WriteBytes([s.Ier, s.Lcr, s.Mcr, s.Scr, s.Fcr, s.Dll, s.Dlm, s.ThrInterruptPending ? (byte)1 : (byte)0]);
        w.WriteBytes(s.Received);
    }

    public override Uart16550State Read(SavedStateReader r, int version)
    {
        byte ier = r.ReadByte(), lcr = r.ReadByte(), mcr = r.ReadByte(), scr = r.ReadByte(), fcr = r.ReadByte(), dll = r.ReadByte(), dlm = r.ReadByte();
        bool thrPending = version >= 2 && r.ReadByte() != 0;
        return new(ier, lcr, mcr, scr, fcr, dll, dlm, r.ReadRemaining(MaxReceived), thrPending);
    }
}
