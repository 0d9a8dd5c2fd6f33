using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// A 16550A UART (COM1 at 0x3F8), after the National Semiconductor PC16550D data sheet. Transmitted bytes go to the
/// host sink at once, so the line status always reports an empty transmitter (THRE|TEMT). The divisor latch
/// (LCR.DLAB) swaps offsets 0 and 1 to DLL/DLM: those writes program the baud rate and print nothing. In loopback
/// (MCR bit 4) transmitted bytes come back as received data, as on the real part.
/// Receiving (<c>Uart16550.Receive.cs</c>): a 16-byte receive FIFO with FCR's trigger levels and the character
/// timeout, or the 16450's single holding register with FIFOs off; overrun sets LSR.OE. Bytes from the host arrive
/// through <see cref="ConnectInput"/> at the line's pace on virtual time.
/// Interrupts (IRQ 4 on a PC): IIR names the highest-priority pending one: receiver line status (an overrun), then
/// received data or a character timeout, then "transmitter holding register empty". A THRE interrupt is pending after
/// every transmitted byte and when IER enables it with the holding register empty, and reading IIR while it names
/// THRE, or writing THR, clears it. As in QEMU, MCR.OUT2 does not gate the line. Linux's 8250 driver transmits from
/// its THRE interrupt and receives from the received-data and timeout interrupts.
/// </summary>
public sealed partial class Uart16550 : IChipsetDevice, IPortIoDevice, ISaveRestore<Uart16550State>
{
    public const ushort Com1Base = 0x3F8;

    private const byte LcrDlab = 0x80;
    private const byte LsrDataReady = 0x01;
    private const byte LsrOverrun = 0x02;
    private const byte LsrThre = 0x20;
    private const byte LsrTemt = 0x40;
    private const byte McrRts = 0x02;
    private const byte McrLoop = 0x10;
    private const byte IirNoInterrupt = 0x01;
    private const byte IirThre = 0x02;
    private const byte IirReceivedData = 0x04;
    private const byte IirLineStatus = 0x06;
    private const byte IirCharacterTimeout = 0x0C;
    private const byte IirFifoEnabled = 0xC0;
    private const byte IerReceivedData = 0x01;
    private const byte IerThre = 0x02;
    private const byte IerLineStatus = 0x04;
    private const byte FcrEnable = 0x01;
    private const byte FcrClearReceive = 0x02;
    private const byte FcrClearTransmit = 0x04;
    // FIFO enable, DMA mode and the trigger level stay; the two reset bits act once.
    private const byte FcrStickyBits = 0xC9;

    private readonly ushort _base;
    private readonly Action<byte> _transmit;
    private readonly IInterruptLine? _irq;
    private bool _thrInterruptPending;

    private byte _ier, _lcr, _mcr, _scr, _fcr, _dll = 0x0C, _dlm;

    /// <summary>A UART without a clock or timers: no character timeout and no host input (the unit tests' part).</summary>
    public Uart16550(ushort basePort, Action<byte> transmit, IInterruptLine? irq = null)
        : this(basePort, transmit, irq, null, null)
    {
    }

    /// <summary>A UART on the VM's virtual time: <paramref name="clock"/> and <paramref name="createTimer"/> drive the
    /// character timeout and the pace at which host input arrives.</summary>
    public Uart16550(ushort basePort, Action<byte> transmit, IInterruptLine? irq, IDeviceClock? clock, Func<Action<long>, IVirtualTimer>? createTimer)
    {
        _base = basePort;
        _transmit = transmit;
        _irq = irq;
        _clock = clock;
        _timeoutTimer = createTimer?.Invoke(CharacterTimeoutExpired);
        _deliveryTimer = createTimer?.Invoke(DeliveryDue);
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
        ScheduleDelivery();
        return IoResult.Ok(value);
    }

    /// <summary>
    /// Pending sources in the PC16550D's priority order (as QEMU orders them): an overrun (with IER's line-status bit),
    /// a character timeout, received data at the trigger level (any byte with FIFOs off), then THRE.
    /// </summary>
    private byte InterruptIdentification() =>
        (_ier & IerLineStatus) != 0 && (_lineErrors & LsrOverrun) != 0 ? IirLineStatus
        : (_ier & IerReceivedData) != 0 && _timeoutPending ? IirCharacterTimeout
        : (_ier & IerReceivedData) != 0 && _rx.Count > 0 && (!FifoEnabled || _rx.Count >= TriggerLevel) ? IirReceivedData
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

        return (uint)(iir | (FifoEnabled ? IirFifoEnabled : 0));
    }

    private uint ReadRegister(ushort port)
    {
        bool dlab = (_lcr & LcrDlab) != 0;
        return (port - _base) switch
        {
            0 when dlab => _dll,
            0 => ReadReceiveBuffer(),
            1 when dlab => _dlm,
            1 => _ier,
            2 => ReadInterruptIdentification(),
            3 => _lcr,
            4 => _mcr,
            5 => ReadLineStatus(),
            6 => ModemStatus(),
            _ => _scr,
        };
    }

    /// <summary>LSR: data ready, an overrun since the last read (reading clears it), and an always-empty transmitter.</summary>
    private uint ReadLineStatus()
    {
        uint lsr = (uint)(LsrThre | LsrTemt | _lineErrors | (_rx.Count > 0 ? LsrDataReady : 0));
        _lineErrors = 0;
        return lsr;
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
            case 2: WriteFifoControl(b); break;
            case 3: _lcr = b; break;
            case 4: _mcr = (byte)(b & 0x1F); break;
            case 5: case 6: break; // LSR and MSR are read-only
            default: _scr = b; break;
        }

        UpdateInterrupt();
        ScheduleDelivery();
        return IoResult.Ok();
    }

    /// <summary>
    /// FCR: bit 0 enables both FIFOs (changing it empties them), bits 1 and 2 empty the receive and transmit FIFO,
    /// bits 6-7 set the receive trigger level (1, 4, 8 or 14 bytes).
    /// </summary>
    private void WriteFifoControl(byte value)
    {
        if (((value ^ _fcr) & FcrEnable) != 0)
        {
            value |= FcrClearReceive | FcrClearTransmit;
        }

        if ((value & FcrClearReceive) != 0)
        {
            ClearReceiver();
        }

        _fcr = (byte)(value & FcrStickyBits);
    }

    public StateCodec<Uart16550State> StateCodec => Uart16550StateCodec.Instance;

    /// <summary>The registers, the received bytes not yet read, and the pending interrupt conditions.</summary>
    public Uart16550State Save() => new(_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm, _rx.ToArray(), _thrInterruptPending, _lineErrors, _timeoutPending);

    /// <summary>
    /// Takes the state back. Received bytes beyond what the restored FIFO holds (an older snapshot's loopback queue had
    /// no bound) would have overrun it: they are dropped and LSR.OE is set. The timers start afresh from the restore:
    /// the character timeout four character times on, the host's next byte one character time on.
    /// </summary>
    public bool Restore(Uart16550State state)
    {
        (_ier, _lcr, _mcr, _scr, _dll, _dlm) = (state.Ier, state.Lcr, state.Mcr, state.Scr, state.Dll, state.Dlm);
        _fcr = (byte)(state.Fcr & FcrStickyBits);
        _thrInterruptPending = state.ThrInterruptPending;
        _lineErrors = (byte)(state.LineErrors & LsrOverrun);
        _timeoutPending = state.TimeoutPending;
        _rx.Clear();
        foreach (byte b in state.Received)
        {
            if (_rx.Count < ReceiveCapacity) _rx.Enqueue(b);
            else _lineErrors |= LsrOverrun;
        }

        _timeoutTimer?.Cancel();
        _deliveryTimer?.Cancel();
        RestartCharacterTimeout();
        ScheduleDelivery();
        UpdateInterrupt();
        return true;
    }

    private void Transmit(byte b)
    {
        // The byte leaves at once, so the holding register is empty again: a new THRE interrupt is pending.
        _thrInterruptPending = true;
        if ((_mcr & McrLoop) != 0)
        {
            Receive(b);
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
