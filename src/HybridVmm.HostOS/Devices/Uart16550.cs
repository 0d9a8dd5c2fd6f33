using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// A 16550A UART (COM1 at 0x3F8). Transmitted bytes go to the host sink at once, so the line status
/// always reports an empty transmitter (THRE|TEMT). The divisor latch (LCR.DLAB) swaps offsets 0 and 1 to
/// DLL/DLM: those writes program the baud rate and print nothing. In loopback (MCR bit 4) transmitted bytes
/// come back as received data, as on the real part. Receiving from the host is a later step.
/// Interrupts (IRQ 4 on a PC): IER enables "received data available" and "transmitter holding register empty"; IIR
/// names the highest-priority pending one (data before THRE). A THRE interrupt is pending after every transmitted
/// byte and when IER enables it with the holding register empty, and reading IIR while it names THRE, or writing
/// THR, clears it (National Semiconductor PC16550D, "Interrupt Identification Register"). As in QEMU, MCR.OUT2 does not
/// gate the line. Linux's 8250 driver transmits from its THRE interrupt: without it, user space's output stops after
/// the first FIFO's worth.
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
    private const byte IirThre = 0x02;
    private const byte IirReceivedData = 0x04;
    private const byte IirFifoEnabled = 0xC0;
    private const byte IerReceivedData = 0x01;
    private const byte IerThre = 0x02;

    private readonly ushort _base;
    private readonly Action<byte> _transmit;
    private readonly Queue<byte> _receive = new();
    private readonly IInterruptLine? _irq;
    private bool _thrInterruptPending;

    private byte _ier, _lcr, _mcr, _scr, _fcr, _dll = 0x0C, _dlm;

    public Uart16550(ushort basePort, Action<byte> transmit, IInterruptLine? irq = null)
    {
        _base = basePort;
        _transmit = transmit;
        _irq = irq;
        Ports = new[] { new PortRange(basePort, (ushort)(basePort + 7)) };
    }

    public string Name => "com1";

    public IReadOnlyList<PortRange> Ports { get; }

    public IPortIoDevice PortIo => this;

    public ushort Divisor => (ushort)(_dll | (_dlm << 8));

    public long BytesTransmitted { get; private set; }

    public IoResult Read(ushort port, int size)
    {
        uint value = ReadRegister(port);
        UpdateInterrupt();
        return IoResult.Ok(value);
    }

    /// <summary>Pending sources in priority order: received data, then THRE.</summary>
    private byte InterruptIdentification() =>
        (_ier & IerReceivedData) != 0 && _receive.Count > 0 ? IirReceivedData
        : (_ier & IerThre) != 0 && _thrInterruptPending ? IirThre
        : IirNoInterrupt;

    private void UpdateInterrupt()
    {
        if (_irq is null) return;
        if (InterruptIdentification() != IirNoInterrupt) _irq.Raise();
        else _irq.Lower();
    }

    private uint ReadInterruptIdentification()
    {
        byte iir = InterruptIdentification();
        if (iir == IirThre)
        {
            _thrInterruptPending = false; // reading IIR while it names THRE clears that interrupt
        }

        return (uint)(iir | ((_fcr & 1) != 0 ? IirFifoEnabled : 0));
    }

    private uint ReadRegister(ushort port)
    {
        bool dlab = (_lcr & LcrDlab) != 0;
        return (port - _base) switch
        {
            0 when dlab => _dll,
            0 => _receive.TryDequeue(out byte b) ? b : 0u,
            1 when dlab => _dlm,
            1 => _ier,
            2 => ReadInterruptIdentification(),
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
            case 1:
                // Enabling THRE with the holding register empty (it always is) raises the interrupt at once.
                if ((b & IerThre) != 0 && (_ier & IerThre) == 0) _thrInterruptPending = true;
                _ier = (byte)(b & 0x0F);
                break;
            case 2: _fcr = b; break;
            case 3: _lcr = b; break;
            case 4: _mcr = (byte)(b & 0x1F); break;
            case 5: case 6: break; // LSR and MSR are read-only
            default: _scr = b; break;
        }

        UpdateInterrupt();
        return IoResult.Ok();
    }

    public StateCodec<Uart16550State> StateCodec => Uart16550StateCodec.Instance;

    /// <summary>The registers and the received bytes not yet read.</summary>
    public Uart16550State Save() => new(_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm, _receive.ToArray(), _thrInterruptPending);

    public bool Restore(Uart16550State state)
    {
        (_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm) = (state.Ier, state.Lcr, state.Mcr, state.Scr, state.Fcr, state.Dll, state.Dlm);
        _thrInterruptPending = state.ThrInterruptPending;
        _receive.Clear();
        foreach (byte b in state.Received)
        {
            _receive.Enqueue(b);
        }

        return true;
    }

    private void Transmit(byte b)
    {
        // The byte leaves at once, so the holding register is empty again: a new THRE interrupt is pending.
        _thrInterruptPending = true;
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
