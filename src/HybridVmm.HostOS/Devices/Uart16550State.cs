using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// A 16550's saved state: its registers, the received bytes the guest has not read yet (the FIFO's content, oldest
/// first), and the pending conditions: THRE, LSR's overrun bit, and a character timeout.
/// </summary>
public sealed record Uart16550State(byte Ier, byte Lcr, byte Mcr, byte Scr, byte Fcr, byte Dll, byte Dlm, byte[] Received,
    bool ThrInterruptPending = false, byte LineErrors = 0, bool TimeoutPending = false);

/// <summary>
/// Chunk "device.com1". Version 1: IER, LCR, MCR, SCR, FCR, DLL, DLM (one byte each), then the received bytes to the
/// end of the chunk (the layout format version 2 of the snapshot file had, so its state still loads). Version 2 adds
/// the pending THRE interrupt (a byte before the received bytes). Version 3, the receive FIFO: LSR's error bits and
/// the pending character timeout (a byte each) follow it, and the received bytes are at most the FIFO's 16.
/// </summary>
public sealed class Uart16550StateCodec : StateCodec<Uart16550State>
{
    /// <summary>The most received bytes a version 1 or 2 chunk may hold (its loopback queue had no bound).</summary>
    public const int MaxReceivedBeforeFifo = 1 << 20;

    public static readonly Uart16550StateCodec Instance = new();

    public override string StateName => "16550 UART";

    public override int Version => 3;

    public override bool CanRead(int version) => version is 1 or 2 or 3;

    public override void Write(SavedStateWriter w, Uart16550State s)
    {
        w.WriteBytes([s.Ier, s.Lcr, s.Mcr, s.Scr, s.Fcr, s.Dll, s.Dlm, s.ThrInterruptPending ? (byte)1 : (byte)0, s.LineErrors, s.TimeoutPending ? (byte)1 : (byte)0]);
        w.WriteBytes(s.Received);
    }

    public override Uart16550State Read(SavedStateReader r, int version)
    {
        byte ier = r.ReadByte(), lcr = r.ReadByte(), mcr = r.ReadByte(), scr = r.ReadByte(), fcr = r.ReadByte(), dll = r.ReadByte(), dlm = r.ReadByte();
        bool thrPending = version >= 2 && r.ReadByte() != 0;
        if (version < 3)
        {
            return new(ier, lcr, mcr, scr, fcr, dll, dlm, r.ReadRemaining(MaxReceivedBeforeFifo), thrPending);
        }

        byte lineErrors = r.ReadByte();
        bool timeoutPending = r.ReadByte() != 0;
        return new(ier, lcr, mcr, scr, fcr, dll, dlm, r.ReadRemaining(Uart16550.FifoBytes), thrPending, lineErrors, timeoutPending);
    }
}
