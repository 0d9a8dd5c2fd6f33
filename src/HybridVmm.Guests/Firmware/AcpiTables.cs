using System.Buffers.Binary;
using System.Text;
using HybridVmm.Guests.Multiboot;

namespace HybridVmm.Guests.Firmware;

/// <summary>
/// The ACPI tables the platform's firmware leaves in memory (ACPI 6.5, chapter 5), the way a PC's BIOS and QEMU's
/// SeaBIOS do, so that an operating system finds the interrupt controllers and the power management hardware: the RSDP
/// in the BIOS area, an RSDT, a FADT (revision 1) with its FACS and a DSDT, and a MADT. Everything is in one block at
/// <see cref="Address"/>, inside 0xF0000-0xFFFFF, which both memory maps report as reserved, where Linux and kvm-unit-tests
/// search for the RSDP.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>MADT: the local APIC at 0xFEE00000 with PCAT_COMPAT (the 8259s are present); one enabled processor local APIC
/// per vCPU, APIC IDs 0..N-1; the I/O APIC at 0xFEC00000 with ID N and GSI base 0; two interrupt source overrides, IRQ 0
/// → GSI 2 (the PIT reaches the I/O APIC's input 2) and IRQ 9 → GSI 9 level-triggered, active high (the SCI); and the
/// local APIC NMI on LINT1 for every processor.</item>
/// <item>FADT revision 1 (116 bytes, as QEMU's i440fx machine gives): SCI on IRQ 9, no SMI command port (always in
/// ACPI mode), PM1a event block 0x600, PM1a control block 0x604, PM timer 0x608 (24-bit), no GPE blocks, no C2/C3,
/// RTC century at CMOS 0x32, flags WBINVD, PROC_C1, PWR_BUTTON and SLP_BUTTON (no fixed buttons). Revision 1 has no
/// IAPC_BOOT_ARCH, so legacy devices and the 8042 are assumed present, and no reset register: a guest resets through
/// the 8042 or port 0x92.</item>
/// <item>DSDT: a definition block whose only object is \_S5 = {0, 0, 0, 0} (SLP_TYP 0, PIIX4's value), so that an
/// operating system can power off through PM1_CNT. There is no PCI root bridge, no _PRT and no other device.</item>
/// </list>
/// </remarks>
public static class AcpiTables
{
    /// <summary>Where the tables go: the RSDP first (16-byte aligned), then the tables.</summary>
    public const uint Address = 0xF0000;
    public const uint LocalApicAddress = 0xFEE0_0000, IoApicAddress = 0xFEC0_0000;
    public const ushort PmBase = 0x600;
    public const int SciIrq = 9;
    public const string OemId = "HYBVMM", OemTableId = "HYBRIDVM";

    /// <summary>The I/O APIC's ID: the first after the processors' APIC IDs, as the MP specification's firmware numbers them.</summary>
    public static byte IoApicId(int processors) => (byte)processors;

    /// <summary>The tables for a machine with <paramref name="processors"/> vCPUs, as one write into guest memory.</summary>
    public static GuestWrite Build(int processors)
    {
        if (processors is < 1 or > 255)
        {
            throw new ArgumentOutOfRangeException(nameof(processors), "an xAPIC machine has 1 to 255 processors");
        }

        const uint rsdp = Address, rsdt = Address + 0x20, fadt = Address + 0x50, facs = Address + 0x100, dsdt = Address + 0x140;
        const uint madt = Address + 0x180;
        byte[] block = new byte[madt - Address + MadtLength(processors)];
        Span<byte> b = block;

        // FACS (64-byte aligned, no checksum): signature, length; no hardware signature, waking vector or global lock.
        Encoding.ASCII.GetBytes("FACS", b[(int)(facs - Address)..]);
        BinaryPrimitives.WriteUInt32LittleEndian(b[(int)(facs - Address + 4)..], 64);

        // DSDT: Name (_S5, Package (4) {0, 0, 0, 0}) in AML: NameOp, NameSeg, PackageOp, PkgLength 6, 4 elements, 4 × ZeroOp.
        byte[] aml = [0x08, (byte)'_', (byte)'S', (byte)'5', (byte)'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00];
        Span<byte> d = b[(int)(dsdt - Address)..];
        aml.CopyTo(d[36..]);
        Header(d, "DSDT", 36 + aml.Length, revision: 1);

        Span<byte> f = b[(int)(fadt - Address)..];
        BinaryPrimitives.WriteUInt32LittleEndian(f[36..], facs);
        BinaryPrimitives.WriteUInt32LittleEndian(f[40..], dsdt);
        f[44] = 1; // INT_MODEL: multiple APIC (ACPI 1.0's field)
        BinaryPrimitives.WriteUInt16LittleEndian(f[46..], SciIrq);
        BinaryPrimitives.WriteUInt32LittleEndian(f[56..], PmBase);         // PM1a_EVT_BLK
        BinaryPrimitives.WriteUInt32LittleEndian(f[64..], PmBase + 4u);    // PM1a_CNT_BLK
        BinaryPrimitives.WriteUInt32LittleEndian(f[76..], PmBase + 8u);    // PM_TMR_BLK
        f[88] = 4; // PM1_EVT_LEN
        f[89] = 2; // PM1_CNT_LEN
        f[91] = 4; // PM_TMR_LEN
        BinaryPrimitives.WriteUInt16LittleEndian(f[96..], 0x0FFF); // P_LVL2_LAT > 100: no C2
        BinaryPrimitives.WriteUInt16LittleEndian(f[98..], 0x0FFF); // P_LVL3_LAT > 1000: no C3
        f[108] = 0x32; // CENTURY: the RTC's CMOS index
        BinaryPrimitives.WriteUInt32LittleEndian(f[112..], (1u << 0) | (1u << 2) | (1u << 4) | (1u << 5));
        Header(f, "FACP", 116, revision: 1);

        Span<byte> m = b[(int)(madt - Address)..];
        BinaryPrimitives.WriteUInt32LittleEndian(m[36..], LocalApicAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(m[40..], 1); // PCAT_COMPAT
        int at = 44;
        for (int cpu = 0; cpu < processors; cpu++)
        {
            m[at] = 0; m[at + 1] = 8; m[at + 2] = (byte)cpu; m[at + 3] = (byte)cpu; // processor local APIC
            BinaryPrimitives.WriteUInt32LittleEndian(m[(at + 4)..], 1);         // enabled
            at += 8;
        }

        m[at] = 1; m[at + 1] = 12; m[at + 2] = IoApicId(processors);           // I/O APIC
        BinaryPrimitives.WriteUInt32LittleEndian(m[(at + 4)..], IoApicAddress);
        at += 12;
        at = Override(m, at, irq: 0, gsi: 2, flags: 0);
        at = Override(m, at, irq: SciIrq, gsi: SciIrq, flags: 0x000D); // active high (01), level-triggered (11)
        m[at] = 4; m[at + 1] = 6; m[at + 2] = 0xFF; m[at + 5] = 1;           // local APIC NMI: all processors, LINT1
        Header(m, "APIC", MadtLength(processors), revision: 1);

        Span<byte> t = b[(int)(rsdt - Address)..];
        BinaryPrimitives.WriteUInt32LittleEndian(t[36..], fadt);
        BinaryPrimitives.WriteUInt32LittleEndian(t[40..], madt);
        Header(t, "RSDT", 44, revision: 1);

        // RSDP, ACPI 1.0 form (revision 0, 20 bytes): signature, checksum, OEM ID, revision, RSDT address.
        Span<byte> p = b[(int)(rsdp - Address)..];
        Encoding.ASCII.GetBytes("RSD PTR ", p);
        Encoding.ASCII.GetBytes(OemId, p[9..]);
        BinaryPrimitives.WriteUInt32LittleEndian(p[16..], rsdt);
        p[8] = Checksum(p[..20]);

        return new GuestWrite(Address, block);
    }

    private static int MadtLength(int processors) => 44 + 8 * processors + 12 + 2 * 10 + 6;

    private static int Override(Span<byte> m, int at, byte irq, uint gsi, ushort flags)
    {
        m[at] = 2; m[at + 1] = 10; m[at + 2] = 0; m[at + 3] = irq; // interrupt source override, bus 0 (ISA)
        BinaryPrimitives.WriteUInt32LittleEndian(m[(at + 4)..], gsi);
        BinaryPrimitives.WriteUInt16LittleEndian(m[(at + 8)..], flags);
        return at + 10;
    }

    /// <summary>The 36-byte system description table header, with the checksum over <paramref name="length"/> bytes.</summary>
    private static void Header(Span<byte> table, string signature, int length, byte revision)
    {
        Encoding.ASCII.GetBytes(signature, table);
        BinaryPrimitives.WriteUInt32LittleEndian(table[4..], (uint)length);
        table[8] = revision;
        table[9] = 0;
        Encoding.ASCII.GetBytes(OemId, table[10..]);
        Encoding.ASCII.GetBytes(OemTableId, table[16..]);
        BinaryPrimitives.WriteUInt32LittleEndian(table[24..], 1);           // OEM revision
        Encoding.ASCII.GetBytes("HVMM", table[28..]);                         // creator ID
        BinaryPrimitives.WriteUInt32LittleEndian(table[32..], 1);           // creator revision
        table[9] = Checksum(table[..length]);
    }

    /// <summary>The byte that makes <paramref name="bytes"/> sum to 0 mod 256 (its checksum field still 0).</summary>
    private static byte Checksum(ReadOnlySpan<byte> bytes)
    {
        byte sum = 0;
        foreach (byte x in bytes)
        {
            sum += x;
        }

        return (byte)-sum;
    }
}
