using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// A minimal 8042 keyboard controller (data port 0x60, status and command port 0x64) with a keyboard that answers
/// its commands but has no keys: the controller's self-test (0xAA → 0x55), the interface tests, the command byte
/// (0x20 read, 0x60 write), the output port (0xD0, 0xD1) and the reset line (0xFE, or any pulse command 0xF0-0xFF
/// with bit 0 clear, or an output-port write with bit 0 clear), which resets the VM. It starts as the firmware
/// leaves it on QEMU's PC: status 0x1C (system flag, command last, not inhibited), command byte 0x61, output port 0xCF.
/// </summary>
/// <remarks>
/// It never raises IRQ 1 or IRQ 12: nothing is connected to type on, and a guest that probes the controller polls
/// the status register. As QEMU does, the "last write was a command" status bit is set by a command and stays set.
/// There is no mouse: bytes sent to it (0xD4) are dropped.
/// </remarks>
public sealed class I8042Controller(IVmControl control) : IChipsetDevice, IPortIoDevice, ISaveRestore<I8042State>
{
    public const ushort DataPort = 0x60;
    public const ushort CommandPort = 0x64;

    public const byte StatusOutputFull = 0x01;
    public const byte StatusSystemFlag = 0x04;
    public const byte StatusCommand = 0x08;
    public const byte StatusNotInhibited = 0x10;

    /// <summary>Keyboard acknowledge.</summary>
    private const byte Ack = 0xFA;
    private const int MaxQueued = 16;

    private readonly Queue<byte> _output = new();
    private byte _status = StatusNotInhibited | StatusCommand | StatusSystemFlag;
    private byte _commandByte = 0x61;
    private byte _outputPort = 0xCF;
    private byte _lastOutput;
    // A controller command waiting for its data byte (0x60, 0xD1, ...), or 0.
    private byte _pendingCommand;
    // The keyboard is waiting for the argument of its last command (LEDs, typematic rate, scan code set).
    private bool _keyboardExpectsArgument;

    public string Name => "i8042";

    public IReadOnlyList<PortRange> Ports { get; } = new[] { new PortRange(DataPort, DataPort), new PortRange(CommandPort, CommandPort) };

    public IPortIoDevice PortIo => this;

    public byte CommandByte => _commandByte;

    /// <summary>Only the byte at the port is the controller's; the bytes a wider access reaches beyond it read as all ones.</summary>
    public IoResult Read(ushort port, int size)
    {
        uint value = port == CommandPort ? Status() : ReadData();
        return IoResult.Ok(value | (0xFFFF_FFFFu << 8));
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        byte b = (byte)value;
        if (port == CommandPort)
        {
            _status |= StatusCommand;
            Command(b);
        }
        else
        {
            Data(b);
        }

        return IoResult.Ok();
    }

    private byte Status() => (byte)((_status & ~StatusOutputFull) | (_output.Count > 0 ? StatusOutputFull : 0));

    /// <summary>Reading the data port empties the output buffer; with nothing in it, the last byte reads again.</summary>
    private byte ReadData()
    {
        if (_output.TryDequeue(out byte b))
        {
            _lastOutput = b;
        }

        return _lastOutput;
    }

    private void Command(byte command)
    {
        _pendingCommand = 0;
        switch (command)
        {
            case 0x20:
                Respond(_commandByte);
                break;
            case >= 0x21 and <= 0x3F:
                Respond(0); // the rest of the controller's RAM: nothing kept there
                break;
            case >= 0x60 and <= 0x7F:
            case 0xD1: // write the output port
            case 0xD2: // write the keyboard's output buffer
            case 0xD3: // write the mouse's output buffer
            case 0xD4: // write to the mouse
                _pendingCommand = command;
                break;
            case 0xA7: // disable the mouse port
                _commandByte |= 0x20;
                break;
            case 0xA8: // enable the mouse port
                _commandByte &= unchecked((byte)~0x20);
                break;
            case 0xA9: // mouse interface test: no error
            case 0xAB: // keyboard interface test: no error
                Respond(0x00);
                break;
            case 0xAA: // controller self-test: passed, and the system flag is set
                _status |= StatusSystemFlag;
                Respond(0x55);
                break;
            case 0xAD: // disable the keyboard
                _commandByte |= 0x10;
                break;
            case 0xAE: // enable the keyboard
                _commandByte &= unchecked((byte)~0x10);
                break;
            case 0xC0: // input port: keyboard not inhibited
                Respond(0x80);
                break;
            case 0xD0:
                Respond(_outputPort);
                break;
            case 0xDD: // A20 off
                _outputPort &= unchecked((byte)~0x02);
                break;
            case 0xDF: // A20 on
                _outputPort |= 0x02;
                break;
            case >= 0xF0:
                // Pulse the output lines whose bits are 0 in the low nibble; line 0 is the CPU's reset.
                if ((command & 0x01) == 0)
                {
                    control.RequestReset();
                }

                break;
        }
    }

    private void Data(byte b)
    {
        byte pending = _pendingCommand;
        _pendingCommand = 0;
        switch (pending)
        {
            case 0x60:
                // The system flag in the status stays as the self-test left it, as on QEMU.
                _commandByte = b;
                break;
            case > 0x60 and <= 0x7F:
                break;
            case 0xD1:
                _outputPort = b;
                if ((b & 0x01) == 0)
                {
                    control.RequestReset();
                }

                break;
            case 0xD2:
            case 0xD3:
                Respond(b);
                break;
            case 0xD4:
                break; // no mouse
            default:
                Keyboard(b);
                break;
        }
    }

    /// <summary>A byte for the keyboard: a PS/2 keyboard with no keys acknowledges and answers its commands.</summary>
    private void Keyboard(byte b)
    {
        if (_keyboardExpectsArgument)
        {
            _keyboardExpectsArgument = false;
            Respond(Ack);
            return;
        }

        switch (b)
        {
            case 0xEE: // echo
                Respond(0xEE);
                break;
            case 0xF2: // identify: an MF2 keyboard
                Respond(Ack);
                Respond(0xAB);
                Respond(0x83);
                break;
            case 0xFF: // reset: self-test passed
                Respond(Ack);
                Respond(0xAA);
                break;
            case 0xED: // LEDs
            case 0xF0: // scan code set
            case 0xF3: // typematic rate
                _keyboardExpectsArgument = true;
                Respond(Ack);
                break;
            default:
                Respond(Ack);
                break;
        }
    }

    private void Respond(byte b)
    {
        if (_output.Count < MaxQueued)
        {
            _output.Enqueue(b);
        }
    }

    public StateCodec<I8042State> StateCodec => I8042StateCodec.Instance;

    public I8042State Save() => new(_status, _commandByte, _outputPort, _lastOutput, _pendingCommand, _keyboardExpectsArgument, _output.ToArray());

    public bool Restore(I8042State state)
    {
        (_status, _commandByte, _outputPort, _lastOutput, _pendingCommand, _keyboardExpectsArgument) =
            (state.Status, state.CommandByte, state.OutputPort, state.LastOutput, state.PendingCommand, state.KeyboardExpectsArgument);
        _output.Clear();
        foreach (byte b in state.Output.AsSpan(0, Math.Min(state.Output.Length, MaxQueued)))
        {
            _output.Enqueue(b);
        }

        return true;
    }
}
