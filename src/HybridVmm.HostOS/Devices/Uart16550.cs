using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// A 16550A UART (COM1 at 0x3F8). Transmitted bytes go to the host sink at once, so the line status
/// always reports an empty transmitter (THRE|TEMT). The divisor latch (LCR.DLAB) swaps offsets 0 and 1 to
/// DLL/DLM: those writes program the baud rate and print nothing. In loopback (MCR bit 4) transmitted bytes
/// come back as received data, as on the real part. Receiving from the host is a later step.
/// </summary>
public sealed class Uart16550 : IChipsetDevice, IPortIoDevice, ISaveRestore<Uart16550State>
{
    public const ushort Com1Base = 0x3F8;

    private const byte LcrDlab = 0x80;
    private const byte LsrDataReady = 0x01;
    private const byte LsrThre = 0x20;
    private const byte LsrTemt = 0x40;
    private const byte McrLoop = 0x10;
    private const byte IirNoInterrupt = 0x01;
    private const byte IirFifoEnabled = 0xC0;

    private readonly ushort _base;
    private readonly Action<byte> _transmit;
    private readonly Queue<byte> _receive = new();

    private byte _ier, _lcr, _mcr, _scr, _fcr, _dll = 0x0C, _dlm;

    public Uart16550(ushort basePort, Action<byte> transmit)
    {
        _base = basePort;
        _transmit = transmit;
        Ports = new[] { new PortRange(basePort, (ushort)(basePort + 7)) };
    }

    public string Name => "com1";

    public IReadOnlyList<PortRange> Ports { get; }

    public IPortIoDevice PortIo => this;

    public ushort Divisor => (ushort)(_dll | (_dlm << 8));

    public long BytesTransmitted { get; private set; }

    public IoResult Read(ushort port, int size) => IoResult.Ok(ReadRegister(port));

    private uint ReadRegister(ushort port)
    {
        bool dlab = (_lcr & LcrDlab) != 0;
        return (port - _base) switch
        {
            0 when dlab => _dll,
            0 => _receive.TryDequeue(out byte b) ? b : 0u,
            1 when dlab => _dlm,
            1 => _ier,
            2 => (uint)(IirNoInterrupt | ((_fcr & 1) != 0 ? IirFifoEnabled : 0)),
            3 => _lcr,
            4 => _mcr,
            5 => (uint)(LsrThre | LsrTemt | (_receive.Count > 0 ? LsrDataReady : 0)),
            6 => ModemStatus(),
            _ => _scr,
        };
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        byte b = (byte)value;
        bool dlab = (_lcr & LcrDlab) != 0;
        switch (port - _base)
        {
            case 0 when dlab: _dll = b; break;
            case 0: Transmit(b); break;
            case 1 when dlab: _dlm = b; break;
            case 1: _ier = (byte)(b & 0x0F); break;
            case 2: _fcr = b; break;
            case 3: _lcr = b; break;
            case 4: _mcr = (byte)(b & 0x1F); break;
            case 5: case 6: break; // LSR and MSR are read-only
            default: _scr = b; break;
        }

        return IoResult.Ok();
    }

    public StateCodec<Uart16550State> StateCodec => Uart16550StateCodec.Instance;

    /// <summary>The registers and the received bytes not yet read.</summary>
    public Uart16550State Save() => new(_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm, _receive.ToArray());

    public bool Restore(Uart16550State state)
    {
        (_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm) = (state.Ier, state.Lcr, state.Mcr, state.Scr, state.Fcr, state.Dll, state.Dlm);
        _receive.Clear();
        foreach (byte b in state.Received)
        {
            _receive.Enqueue(b);
        }

        return true;
    }

    private void Transmit(byte b)
    {
        if ((_mcr & McrLoop) != 0)
        {
            _receive.Enqueue(b);
            return;
        }

        BytesTransmitted++;
        _transmit(b);
    }

    /// <summary>MSR: with no modem attached CTS, DSR and DCD read as asserted (as QEMU's serial does);
    /// in loopback the MCR outputs feed the inputs (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD).</summary>
    private uint ModemStatus()
    {
        if ((_mcr & McrLoop) == 0)
        {
            return 0xB0;
        }

        uint msr = 0;
        if ((_mcr & 0x02) != 0) msr |= 0x10;
        if ((_mcr & 0x01) != 0) msr |= 0x20;
        if ((_mcr & 0x04) != 0) msr |= 0x40;
        if ((_mcr & 0x08) != 0) msr |= 0x80;
        return msr;
    }
}
