using System.Buffers.Binary;
using System.Text;
using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// QEMU's firmware configuration interface (fw_cfg), the traditional I/O-port form on a PC: a 16-bit write to
/// the selector (0x510) picks an item by key and rewinds it; each byte read from the data port (0x511) returns
/// the item's next byte, and zero past its end or for a key nobody set. As in QEMU, a byte read of 0x510 also
/// reads data, and any other access (a wider read, a byte write) does nothing and reads zero. The DMA interface
/// (0x514) is not offered, so the ID item says "traditional interface only" (1).
/// </summary>
/// <remarks>
/// The items are the VM's configuration and do not change, so only the selection and the read offset are saved
/// state. kvm-unit-tests reads the CPU count (0x0005) and the RAM size (0x0003). QEMU sets the command-line
/// items (0x0014, 0x0015) only when it boots a Linux kernel; a Multiboot kernel gets its command line from the
/// Multiboot information, and the builder passes no command line here for one, so both read as absent.
/// </remarks>
public sealed class FwCfgDevice : IChipsetDevice, IPortIoDevice, ISaveRestore<FwCfgState>
{
    public const ushort SelectorPort = 0x510;
    public const ushort DataPort = 0x511;

    public const ushort Signature = 0x0000;
    public const ushort Id = 0x0001;
    public const ushort RamSize = 0x0003;
    public const ushort NbCpus = 0x0005;
    public const ushort MaxCpus = 0x000F;
    public const ushort CmdlineSize = 0x0014;
    public const ushort CmdlineData = 0x0015;
    public const ushort FileDir = 0x0019;

    /// <summary>Bit 14 of a key asked for the write channel, which QEMU no longer offers; the item is read as usual.</summary>
    private const ushort WriteChannel = 0x4000;

    private readonly Dictionary<ushort, byte[]> _items = new();
    private ushort _selected;
    private uint _offset;

    /// <param name="ramBytes">The guest's RAM, as FW_CFG_RAM_SIZE reports it.</param>
    /// <param name="processors">The guest's virtual processors (FW_CFG_NB_CPUS and FW_CFG_MAX_CPUS).</param>
    /// <param name="commandLine">The kernel command line for a boot protocol that takes it from fw_cfg (Linux); null for none.</param>
    public FwCfgDevice(ulong ramBytes, ushort processors, string? commandLine = null)
    {
        _items[Signature] = "QEMU"u8.ToArray();
        _items[Id] = LittleEndian32(1);
        _items[RamSize] = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(_items[RamSize], ramBytes);
        _items[NbCpus] = LittleEndian16(processors);
        _items[MaxCpus] = LittleEndian16(processors);
        // The file directory: a big-endian count of files (none), then the entries.
        _items[FileDir] = new byte[4];
        if (commandLine is not null)
        {
            byte[] text = Encoding.ASCII.GetBytes(commandLine + "\0");
            _items[CmdlineSize] = LittleEndian32((uint)text.Length);
            _items[CmdlineData] = text;
        }

        Ports = new[] { new PortRange(SelectorPort, DataPort) };
    }

    public string Name => "fw-cfg";

    public IReadOnlyList<PortRange> Ports { get; }

    public IPortIoDevice PortIo => this;

    public IoResult Read(ushort port, int size)
    {
        if (size != 1)
        {
            return IoResult.Ok(0);
        }

        byte value = 0;
        if (_items.TryGetValue((ushort)(_selected & ~WriteChannel), out byte[]? item) && _offset < item.Length)
        {
            value = item[_offset];
        }

        // The offset stops counting past the end: every further read is zero.
        if (_offset < uint.MaxValue)
        {
            _offset++;
        }

        return IoResult.Ok(value);
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        if (size == 2)
        {
            _selected = (ushort)value;
            _offset = 0;
        }

        return IoResult.Ok();
    }

    public StateCodec<FwCfgState> StateCodec => FwCfgStateCodec.Instance;

    public FwCfgState Save() => new(_selected, _offset);

    public bool Restore(FwCfgState state)
    {
        (_selected, _offset) = (state.Selected, state.Offset);
        return true;
    }

    private static byte[] LittleEndian16(ushort value)
    {
        var bytes = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, value);
        return bytes;
    }

    private static byte[] LittleEndian32(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        return bytes;
    }
}
