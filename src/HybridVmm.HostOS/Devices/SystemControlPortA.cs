using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// System Control Port A (0x92, the "fast A20 and reset" port of PS/2 machines and every PC chipset since). Every
/// bit reads back as written. Bit 1 is the A20 gate; bit 0, written from 0 to 1, resets the machine (a fast reset
/// that does not go through the keyboard controller). The port starts as the firmware leaves it on QEMU's PC:
/// A20 on (0x02).
/// </summary>
/// <remarks>
/// The A20 bit reads back, but the CPU's addresses are never wrapped at 1 MiB: HybridVmm has no real-mode
/// firmware that would need the 8086 wrap-around, and a protected-mode kernel turns A20 on, not off.
/// </remarks>
public sealed class SystemControlPortA(IVmControl control) : IChipsetDevice, IPortIoDevice, ISaveRestore<SystemControlPortAState>
{
    public const ushort Port = 0x92;

    public const byte FastReset = 0x01;
    public const byte A20Gate = 0x02;

    private byte _value = A20Gate;

    public string Name => "port92";

    public IReadOnlyList<PortRange> Ports { get; } = new[] { new PortRange(Port, Port) };

    public IPortIoDevice PortIo => this;

    public bool A20Enabled => (_value & A20Gate) != 0;

    /// <summary>Only the byte at 0x92 is this port; the bytes a wider access reaches beyond it read as nothing (all ones).</summary>
    public IoResult Read(ushort port, int size) => IoResult.Ok(_value | (0xFFFF_FFFFu << 8));

    public IoResult Write(ushort port, int size, uint value)
    {
        byte old = _value;
        _value = (byte)value;
        if ((_value & FastReset) != 0 && (old & FastReset) == 0)
        {
            control.RequestReset();
        }

        return IoResult.Ok();
    }

    public StateCodec<SystemControlPortAState> StateCodec => SystemControlPortAStateCodec.Instance;

    public SystemControlPortAState Save() => new(_value);

    public bool Restore(SystemControlPortAState state)
    {
        _value = state.Value;
        return true;
    }
}

/// <summary>Port 0x92's saved state: the value last written.</summary>
public sealed record SystemControlPortAState(byte Value);

/// <summary>Chunk "device.port92", version 1: the value (one byte).</summary>
public sealed class SystemControlPortAStateCodec : StateCodec<SystemControlPortAState>
{
    public static readonly SystemControlPortAStateCodec Instance = new();

    public override string StateName => "system control port A";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, SystemControlPortAState s) => w.WriteByte(s.Value);

    public override SystemControlPortAState Read(SavedStateReader r, int version) => new(r.ReadByte());
}
