using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The PC's I/O APIC, an Intel 82093AA at 0xFEC00000 with 24 inputs, in the root partition's device model as in
/// OpenVMM's chipset and Hyper-V's worker: the kernel owns the local APICs, and this device turns its input lines into
/// interrupt messages for them (<see cref="DeviceServices.SignalMsi"/>), as the chip sends them on the APIC bus.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Registers through IOREGSEL (offset 0x00) and IOWIN (0x10): ID (0x00, bits 27:24), version (0x01: 0x11, 24
/// entries), arbitration ID (0x02), and the redirection table (0x10-0x3F, low then high dword of each entry). Other
/// offsets read 0 and ignore writes.</item>
/// <item>ISA IRQ n reaches input n, except IRQ 0 (the PIT), which reaches input 2, as the ACPI MADT's interrupt source
/// override says and as QEMU wires it.</item>
/// <item>An entry powers on masked. An edge-triggered input sends one message when it is asserted while unmasked; an
/// edge on a masked input is lost (82093AA data sheet). A level-triggered input sends while it is asserted, unmasked
/// and its remote IRR is clear, and sets remote IRR; the local APIC's EOI for that vector (<see cref="EndOfInterrupt"/>)
/// clears it and the input sends again if it is still asserted.</item>
/// <item>Lines are logical: a device's raised line is an asserted input whatever the entry's polarity bit (ISA inputs
/// are active high and the MADT declares them so), as QEMU treats it.</item>
/// <item>Delivery is immediate, so the delivery-status bit reads 0. The message carries the entry's vector, delivery
/// mode, destination mode, trigger mode and destination; what the kernel does with SMI, INIT and ExtINT messages is in
/// docs/guest-platform.md.</item>
/// </list>
/// </remarks>
public sealed class IoApic : IChipsetDevice, IMmioDevice, ISaveRestore<IoApicState>
{
    public const uint BaseAddress = 0xFEC0_0000;
    public const int Inputs = 24;
    public const uint Version = 0x11 | ((Inputs - 1) << 16);

    private const ulong Masked = 1ul << 16, LevelTriggered = 1ul << 15, RemoteIrr = 1ul << 14;
    /// <summary>Vector, delivery mode, destination mode, polarity, trigger mode and mask; delivery status and remote IRR are read-only.</summary>
    private const ulong LowWritable = 0x0001_AFFF;

    private readonly Action<uint, uint> _signalMsi;
    private readonly ulong[] _entries = new ulong[Inputs];
    private byte _id;
    private byte _select;
    private uint _asserted;

    /// <param name="id">The APIC ID firmware gave it, which the MADT reports.</param>
    /// <param name="signalMsi">Sends a message (MSI address, data) to the local APICs.</param>
    public IoApic(byte id, Action<uint, uint> signalMsi)
    {
        _id = id;
        _signalMsi = signalMsi;
        for (int i = 0; i < Inputs; i++)
        {
            _entries[i] = Masked;
        }
    }

    public string Name => "ioapic";

    public IMmioDevice Mmio => this;

    public IReadOnlyList<MmioRange> Regions { get; } = [new MmioRange(BaseAddress, BaseAddress + 0xFFF)];

    /// <summary>The input ISA IRQ <paramref name="irq"/> (0-15) reaches.</summary>
    public static int InputOf(int irq) => irq == 0 ? 2 : irq;

    /// <summary>A platform interrupt line changed level.</summary>
    public void SetIrq(int irq, bool level)
    {
        int input = InputOf(irq);
        if ((uint)input >= Inputs)
        {
            return;
        }

        uint bit = 1u << input;
        bool was = (_asserted & bit) != 0;
        _asserted = level ? _asserted | bit : _asserted & ~bit;
        if (!level)
        {
            return;
        }

        if ((_entries[input] & LevelTriggered) != 0)
        {
            Service(input);
        }
        else if (!was && (_entries[input] & Masked) == 0)
        {
            Send(input);
        }
    }

    /// <summary>The local APIC ended a level-triggered interrupt with <paramref name="vector"/>: remote IRR clears where it matches.</summary>
    public void EndOfInterrupt(byte vector)
    {
        for (int i = 0; i < Inputs; i++)
        {
            if ((byte)_entries[i] == vector && (_entries[i] & (LevelTriggered | RemoteIrr)) == (LevelTriggered | RemoteIrr))
            {
                _entries[i] &= ~RemoteIrr;
                Service(i);
            }
        }
    }

    /// <summary>A level-triggered input sends when it is asserted, unmasked and not waiting for its EOI.</summary>
    private void Service(int input)
    {
        ulong entry = _entries[input];
        if ((entry & LevelTriggered) != 0 && (entry & (Masked | RemoteIrr)) == 0 && (_asserted & (1u << input)) != 0)
        {
            _entries[input] |= RemoteIrr;
            Send(input);
        }
    }

    /// <summary>The redirection entry as an MSI: address 0xFEE00000 with the destination (bits 19:12) and mode (bit 2); data with vector, delivery mode and trigger.</summary>
    private void Send(int input)
    {
        ulong entry = _entries[input];
        uint address = 0xFEE0_0000 | ((uint)(entry >> 56) << 12) | ((uint)(entry >> 11) & 1) << 2;
        uint data = (uint)(entry & 0xFF) | (uint)(entry & 0x700) | ((entry & LevelTriggered) != 0 ? 0xC000u : 0x4000u);
        _signalMsi(address, data);
    }

    public IoResult Read(uint gpa, int size)
    {
        uint offset = gpa & 0xFF;
        uint value = (offset & ~3u) switch
        {
            0x00 => _select,
            0x10 => ReadRegister(),
            _ => 0,
        };
        return IoResult.Ok(value >> (int)((offset & 3) * 8));
    }

    public IoResult Write(uint gpa, int size, uint value)
    {
        switch (gpa & 0xFF)
        {
            case 0x00:
                _select = (byte)value;
                break;
            case 0x10:
                WriteRegister(value);
                break;
        }

        return IoResult.Ok();
    }

    private uint ReadRegister() => _select switch
    {
        0x00 or 0x02 => (uint)_id << 24,
        0x01 => Version,
        >= 0x10 and < 0x10 + 2 * Inputs => (_select & 1) == 0
            ? (uint)_entries[(_select - 0x10) >> 1]
            : (uint)(_entries[(_select - 0x10) >> 1] >> 32),
        _ => 0,
    };

    private void WriteRegister(uint value)
    {
        if (_select == 0x00)
        {
            _id = (byte)((value >> 24) & 0x0F);
            return;
        }

        if (_select is < 0x10 or >= 0x10 + 2 * Inputs)
        {
            return;
        }

        int input = (_select - 0x10) >> 1;
        ulong entry = _entries[input];
        if ((_select & 1) != 0)
        {
            _entries[input] = (entry & 0x00FF_FFFF_FFFF_FFFF) | ((ulong)(value & 0xFF00_0000) << 32);
            return;
        }

        entry = (entry & ~LowWritable) | (value & LowWritable);
        if ((entry & LevelTriggered) == 0)
        {
            entry &= ~RemoteIrr; // remote IRR means nothing for an edge-triggered entry
        }

        _entries[input] = entry;
        Service(input); // unmasking an asserted level-triggered input sends it
    }

    public StateCodec<IoApicState> StateCodec => IoApicStateCodec.Instance;

    public IoApicState Save() => new(_id, _select, _asserted, (ulong[])_entries.Clone());

    public bool Restore(IoApicState state)
    {
        if (state.Entries.Length != Inputs)
        {
            return false;
        }

        _id = state.Id;
        _select = state.Select;
        _asserted = state.Asserted;
        state.Entries.CopyTo(_entries, 0);
        return true;
    }
}

/// <summary>The I/O APIC's saved state: ID, IOREGSEL, the asserted inputs (a bitmap), and the 24 redirection entries.</summary>
public sealed record IoApicState(byte Id, byte Select, uint Asserted, ulong[] Entries);

/// <summary>Chunk "device.ioapic", version 1: ID and IOREGSEL (a byte each), the asserted inputs (u32), then 24 entries (u64 each).</summary>
public sealed class IoApicStateCodec : StateCodec<IoApicState>
{
    public static readonly IoApicStateCodec Instance = new();

    public override string StateName => "I/O APIC";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, IoApicState s)
    {
        w.WriteBytes([s.Id, s.Select]);
        w.WriteUInt32(s.Asserted);
        foreach (ulong entry in s.Entries)
        {
            w.WriteUInt64(entry);
        }
    }

    public override IoApicState Read(SavedStateReader r, int version)
    {
        byte id = r.ReadByte(), select = r.ReadByte();
        uint asserted = r.ReadUInt32();
        var entries = new ulong[IoApic.Inputs];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = r.ReadUInt64();
        }

        return new IoApicState(id, select, asserted, entries);
    }
}
