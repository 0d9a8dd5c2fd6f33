namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The 16550's receiver. With FIFOs on (FCR bit 0) received bytes wait in a 16-byte FIFO; "received data" is pending
/// once it holds the trigger level, and a character timeout (IIR 0x0C) once it has held at least one byte for four
/// character times with neither a new byte nor a read of RBR, so that a short line below the trigger level still
/// interrupts. A byte that finds the FIFO full is lost and sets LSR.OE. With FIFOs off there is one holding
/// register, which a new byte overwrites (also an overrun), as on the 16450.
///
/// Host input (<see cref="ConnectInput"/>) arrives on virtual time, never on the host's: while the guest asserts
/// RTS (MCR bit 1, hardware flow control as a null-modem cable wires it), is not in loopback, and the receiver has
/// room, the host sends one byte per character time at the programmed baud rate and frame (9600 8N1: 1.04 ms). A
/// deterministic source (a file, a pipe) makes the VM wait for its next byte, so the same guest and the same input
/// give the same run; an interactive one that has nothing yet is asked again after <see cref="PollTicks"/>.
/// </summary>
public sealed partial class Uart16550
{
    /// <summary>The 16550A's receive FIFO depth.</summary>
    public const int FifoBytes = 16;

    /// <summary>The UART's reference clock: 1.8432 MHz, divided by 16 × the divisor for the baud rate.</summary>
    private const long ReferenceHz = 1_843_200;

    /// <summary>
    /// At least this long (10 ms of virtual time) between two questions to an interactive source that had nothing: a
    /// typist does not notice it, and an idle guest is not woken a thousand times a second for it.
    /// </summary>
    private const long MinimumPollTicks = 10_000_000;

    private readonly ReceiveFifo _rx = new();
    private readonly IDeviceClock? _clock;
    private readonly IVirtualTimer? _timeoutTimer;
    private readonly IVirtualTimer? _deliveryTimer;
    private ISerialInput? _input;
    private bool _inputEnded;
    private byte _lineErrors;
    private bool _timeoutPending;

    private bool FifoEnabled => (_fcr & FcrEnable) != 0;

    /// <summary>FCR bits 6-7: 1, 4, 8 or 14 bytes.</summary>
    private int TriggerLevel => (_fcr >> 6) switch { 0 => 1, 1 => 4, 2 => 8, _ => 14 };

    private int ReceiveCapacity => FifoEnabled ? FifoBytes : 1;

    /// <summary>Bytes received and not yet read.</summary>
    public int ReceivedCount => _rx.Count;

    /// <summary>
    /// One character's time on the line in virtual ticks (nanoseconds): a start bit, 5-8 data bits, the parity bit
    /// and 1 or 2 stop bits, at 1.8432 MHz / (16 × divisor) baud. A divisor of 0 counts as 1.
    /// </summary>
    public long CharacterTicks
    {
        get
        {
            int frameBits = 1 + 5 + (_lcr & 0x03) + ((_lcr & 0x08) != 0 ? 1 : 0) + ((_lcr & 0x04) != 0 ? 2 : 1);
            long divisor = Math.Max(Divisor, (ushort)1);
            return divisor * 16 * frameBits * Hardware.Clock.VirtualClock.TicksPerSecond / ReferenceHz;
        }
    }

    /// <summary>How long an interactive source that had nothing waits to be asked again: a character time, at least 10 ms.</summary>
    public long PollTicks => Math.Max(CharacterTicks, MinimumPollTicks);

    /// <summary>
    /// Connects the host's end of the line: <paramref name="input"/> sends bytes whenever the guest lets it (RTS, no
    /// loopback, room in the receiver), one per character time. Needs a UART on virtual time (clock and timers).
    /// Call it before the VM runs, or while the worker serves one of its intercepts.
    /// </summary>
    public void ConnectInput(ISerialInput input)
    {
        if (_deliveryTimer is null || _clock is null)
        {
            throw new InvalidOperationException("host input needs a UART built with the VM's clock and timers");
        }

        _input = input;
        _inputEnded = false;
        ScheduleDelivery();
    }

    /// <summary>A byte arrives on the serial line (from the host, or looped back): into the FIFO or the holding register.</summary>
    public void Receive(byte value)
    {
        if (_rx.Count < ReceiveCapacity)
        {
            _rx.Enqueue(value);
        }
        else
        {
            _lineErrors |= LsrOverrun;
            if (!FifoEnabled)
            {
                _rx.ReplaceLast(value); // the 16450's holding register takes the new byte; the FIFO keeps its old ones
            }
        }

        RestartCharacterTimeout();
        UpdateInterrupt();
    }

    /// <summary>RBR: the oldest byte (0 when empty). A read ends a character timeout and, with bytes left, restarts its timer.</summary>
    private uint ReadReceiveBuffer()
    {
        uint value = _rx.TryDequeue(out byte b) ? b : 0u;
        _timeoutPending = false;
        if (_rx.Count > 0)
        {
            RestartCharacterTimeout();
        }
        else
        {
            _timeoutTimer?.Cancel();
        }

        return value;
    }

    private void ClearReceiver()
    {
        _rx.Clear();
        _timeoutPending = false;
        _timeoutTimer?.Cancel();
    }

    private void RestartCharacterTimeout()
    {
        if (_timeoutTimer is not null && _clock is not null && FifoEnabled && _rx.Count > 0)
        {
            _timeoutTimer.ArmAt(_clock.Now + 4 * CharacterTicks);
        }
    }

    private void CharacterTimeoutExpired(long now)
    {
        if (FifoEnabled && _rx.Count > 0)
        {
            _timeoutPending = true;
            UpdateInterrupt();
        }
    }

    private bool HostMaySend =>
        _input is not null && !_inputEnded && (_mcr & (McrRts | McrLoop)) == McrRts && _rx.Count < ReceiveCapacity;

    /// <summary>Arms the next byte's arrival one character time from now, if the host may send and nothing is armed yet.</summary>
    private void ScheduleDelivery()
    {
        if (_deliveryTimer is { Deadline: null } && _clock is not null && HostMaySend)
        {
            _deliveryTimer.ArmAt(_clock.Now + CharacterTicks);
        }
    }

    /// <summary>The line has carried one more character time: take the host's next byte if the guest still lets it send.</summary>
    private void DeliveryDue(long now)
    {
        if (!HostMaySend)
        {
            return; // the next register access that opens the way again arms the timer
        }

        switch (_input!.Read(out byte value))
        {
            case SerialInputStatus.Byte:
                Receive(value);
                if (HostMaySend) _deliveryTimer!.ArmAt(now + CharacterTicks);
                break;
            case SerialInputStatus.NotYet:
                _deliveryTimer!.ArmAt(now + PollTicks);
                break;
            default:
                _inputEnded = true;
                break;
        }
    }

    /// <summary>The receive FIFO: a ring of 16 bytes (one of them used while FIFOs are off).</summary>
    private sealed class ReceiveFifo
    {
        private readonly byte[] _bytes = new byte[FifoBytes];
        private int _head;

        public int Count { get; private set; }

        public void Enqueue(byte value) => _bytes[(_head + Count++) % FifoBytes] = value;

        public void ReplaceLast(byte value) => _bytes[(_head + Count - 1) % FifoBytes] = value;

        public bool TryDequeue(out byte value)
        {
            if (Count == 0)
            {
                value = 0;
                return false;
            }

            value = _bytes[_head];
            _head = (_head + 1) % FifoBytes;
            Count--;
            return true;
        }

        public void Clear() => (_head, Count) = (0, 0);

        public byte[] ToArray()
        {
            var bytes = new byte[Count];
            for (int i = 0; i < Count; i++) bytes[i] = _bytes[(_head + i) % FifoBytes];
            return bytes;
        }
    }
}
