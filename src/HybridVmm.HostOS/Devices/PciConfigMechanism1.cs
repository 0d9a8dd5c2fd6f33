using System.Buffers.Binary;
using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// PCI configuration mechanism 1 (PCI Local Bus Specification 3.0, §3.2.2.3.2) with one device on bus 0: the host
/// bridge at 00:00.0, an Intel 440FX (8086:1237) as on QEMU's PC. A 32-bit write to 0xCF8 sets the address (bit 31
/// enable, bus, device, function, register); the data window 0xCFC-0xCFF then reads or writes that register at any
/// width and offset. Every other function, and any access with the enable bit clear, reads all ones and drops writes.
/// The reset control register of the PIIX (0xCF9, a byte) is here too: writing it with bit 2 set resets the VM.
/// </summary>
/// <remarks>
/// The bridge's header is what QEMU's i440FX shows a kernel after the firmware: command 0x0103 (I/O, memory, SERR#),
/// of which I/O, memory, bus master, SERR# and INTx disable (0x0507) are writable; revision 2; class 06 00 00; header
/// type 0; subsystem 1AF4:1100. The chipset registers from 0x40 hold what is written and do nothing. As on QEMU, an
/// access to 0xCF8-0xCFB other than a 32-bit one at 0xCF8 (and the byte at 0xCF9) reads zero and is dropped.
/// </remarks>
public sealed class PciConfigMechanism1 : IChipsetDevice, IPortIoDevice, ISaveRestore<PciConfigState>
{
    public const ushort AddressPort = 0xCF8;
    public const ushort ResetControlPort = 0xCF9;
    public const ushort DataPort = 0xCFC;

    public const uint EnableBit = 0x8000_0000;
    public const ushort HostBridgeVendor = 0x8086, HostBridgeDevice = 0x1237;

    private const ushort CommandWritable = 0x0507;
    private const int ConfigSpaceBytes = 256;

    private readonly IVmControl _control;
    private readonly byte[] _hostBridge = new byte[ConfigSpaceBytes];
    private uint _address;
    private byte _resetControl;

    public PciConfigMechanism1(IVmControl control)
    {
        _control = control;
        Span<byte> c = _hostBridge;
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], HostBridgeVendor);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], HostBridgeDevice);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x04..], 0x0103);
        c[0x08] = 0x02;                                        // revision
        c[0x0B] = 0x06;                                        // class: bridge; subclass 0: host bridge
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2C..], 0x1AF4); // subsystem vendor
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2E..], 0x1100); // subsystem
        Ports = new[] { new PortRange(AddressPort, DataPort + 3) };
    }

    public string Name => "pci";

    public IReadOnlyList<PortRange> Ports { get; }

    public IPortIoDevice PortIo => this;

    public uint Address => _address;

    public IoResult Read(ushort port, int size)
    {
        if (port < DataPort)
        {
            return IoResult.Ok(port switch
            {
                AddressPort when size == 4 => _address,
                ResetControlPort when size == 1 => _resetControl,
                _ => 0,
            });
        }

        // One byte at a time: a byte of the access beyond 0xCFF reaches no port and reads all ones.
        uint value = 0;
        for (int i = 0; i < size; i++)
        {
            int p = port + i;
            uint b = p <= DataPort + 3 ? ReadConfigByte(p - DataPort) : 0xFF;
            value |= b << (8 * i);
        }

        return IoResult.Ok(value);
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        if (port == AddressPort && size == 4)
        {
            _address = value;
        }
        else if (port == ResetControlPort && size == 1)
        {
            // Bit 2 starts a reset (bit 1 chooses hard or soft, which is the same reset here).
            _resetControl = (byte)(value & 0x02);
            if ((value & 0x04) != 0)
            {
                _control.RequestReset();
            }
        }
        else if (port >= DataPort)
        {
            for (int i = 0; i < size && port + i <= DataPort + 3; i++)
            {
                WriteConfigByte(port + i - DataPort, (byte)(value >> (8 * i)));
            }
        }

        return IoResult.Ok();
    }

    /// <summary>The host bridge's register byte the address selects, or null when it selects nothing.</summary>
    private int? HostBridgeOffset(int byteInWindow)
    {
        // Bits 23:8 are bus, device and function: only 00:00.0 is populated.
        if ((_address & EnableBit) == 0 || (_address & 0x00FF_FF00) != 0)
        {
            return null;
        }

        return (int)(_address & 0xFC) + byteInWindow;
    }

    private uint ReadConfigByte(int byteInWindow) => HostBridgeOffset(byteInWindow) is { } offset ? _hostBridge[offset] : 0xFFu;

    private void WriteConfigByte(int byteInWindow, byte b)
    {
        if (HostBridgeOffset(byteInWindow) is not { } offset)
        {
            return;
        }

        switch (offset)
        {
            case 0x04 or 0x05:
                byte mask = (byte)(CommandWritable >> (8 * (offset - 0x04)));
                _hostBridge[offset] = (byte)((_hostBridge[offset] & ~mask) | (b & mask));
                break;
            case >= 0x40:
                _hostBridge[offset] = b;
                break;
            // The rest of the header (IDs, class, status, BARs the bridge does not have) is read-only.
        }
    }

    public StateCodec<PciConfigState> StateCodec => PciConfigStateCodec.Instance;

    public PciConfigState Save() => new(_address, _resetControl, _hostBridge.ToArray());

    public bool Restore(PciConfigState state)
    {
        if (state.HostBridge.Length != ConfigSpaceBytes)
        {
            return false;
        }

        (_address, _resetControl) = (state.Address, state.ResetControl);
        state.HostBridge.CopyTo(_hostBridge, 0);
        return true;
    }
}

/// <summary>The PCI configuration mechanism's saved state: the address register, the reset control register, and the host bridge's 256 bytes.</summary>
public sealed record PciConfigState(uint Address, byte ResetControl, byte[] HostBridge);

/// <summary>Chunk "device.pci", version 1: the address (u32), the reset control register (byte), then the host bridge's 256 configuration bytes.</summary>
public sealed class PciConfigStateCodec : StateCodec<PciConfigState>
{
    public static readonly PciConfigStateCodec Instance = new();

    public override string StateName => "PCI configuration";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, PciConfigState s)
    {
        w.WriteUInt32(s.Address);
        w.WriteByte(s.ResetControl);
        w.WriteBytes(s.HostBridge);
    }

    public override PciConfigState Read(SavedStateReader r, int version) => new(r.ReadUInt32(), r.ReadByte(), r.ReadBytes(256));
}
