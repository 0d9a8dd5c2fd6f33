using System.Buffers.Binary;
using System.Text;
using HybridVmm.Guests.Firmware;

namespace HybridVmm.Tests.Loader;

/// <summary>
/// The firmware's ACPI tables, read as an operating system reads them (ACPI 6.5, 5.2): the RSDP where Linux and
/// kvm-unit-tests search, every table's checksum, and the MADT's entries. Linux's own parse of them is checked against
/// QEMU's log by <c>DebianLinuxTests</c>.
/// </summary>
public class AcpiTablesTests
{
    private static byte[] Memory(int processors)
    {
        var write = AcpiTables.Build(processors);
        byte[] memory = new byte[0x100000];
        write.Data.CopyTo(memory, write.GuestPhysicalAddress);
        return memory;
    }

    private static uint U32(byte[] m, uint at) => BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan((int)at));

    private static string Signature(byte[] m, uint at) => Encoding.ASCII.GetString(m, (int)at, 4);

    private static void AssertChecksum(byte[] m, uint at, int length, string what)
    {
        byte sum = 0;
        for (int i = 0; i < length; i++) sum += m[at + i];
        Assert.That(sum, Is.Zero, $"{what} checksum");
    }

    /// <summary>The RSDP as kvm-unit-tests finds it: the first 16-byte boundary in 0xE0000-0xFFFFF holding "RSD PTR ".</summary>
    private static uint FindRsdp(byte[] m)
    {
        for (uint at = 0xE0000; at < 0x100000; at += 16)
        {
            if (Encoding.ASCII.GetString(m, (int)at, 8) == "RSD PTR ") return at;
        }

        Assert.Fail("no RSDP");
        return 0;
    }

    [TestCase(1)]
    [TestCase(4)]
    public void EveryTableIsReachableFromTheRsdpWithAValidChecksum(int processors)
    {
        byte[] m = Memory(processors);
        uint rsdp = FindRsdp(m);
        AssertChecksum(m, rsdp, 20, "RSDP");
        Assert.That(m[rsdp + 15], Is.Zero, "revision 0: ACPI 1.0, RSDT only");
        uint rsdt = U32(m, rsdp + 16);
        Assert.That(Signature(m, rsdt), Is.EqualTo("RSDT"));
        AssertChecksum(m, rsdt, (int)U32(m, rsdt + 4), "RSDT");

        var tables = new Dictionary<string, uint>();
        for (uint entry = rsdt + 36; entry < rsdt + U32(m, rsdt + 4); entry += 4)
        {
            uint table = U32(m, entry);
            tables[Signature(m, table)] = table;
            AssertChecksum(m, table, (int)U32(m, table + 4), Signature(m, table));
        }

        Assert.That(tables.Keys, Is.EquivalentTo(new[] { "FACP", "APIC" }));
        uint fadt = tables["FACP"];
        uint facs = U32(m, fadt + 36), dsdt = U32(m, fadt + 40);
        Assert.Multiple(() =>
        {
            Assert.That((Signature(m, facs), facs % 64, U32(m, facs + 4)), Is.EqualTo(("FACS", 0u, 64u)), "FACS: 64-byte aligned, 64 bytes");
            Assert.That(Signature(m, dsdt), Is.EqualTo("DSDT"));
            Assert.That(U32(m, fadt + 76), Is.EqualTo(0x608u), "PM_TMR_BLK");
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(m.AsSpan((int)fadt + 46)), Is.EqualTo(9), "SCI_INT");
        });
        AssertChecksum(m, dsdt, (int)U32(m, dsdt + 4), "DSDT");
    }

    [Test]
    public void TheMadtListsEveryProcessorTheIoApicTheOverridesAndTheNmi()
    {
        byte[] m = Memory(2);
        uint rsdt = U32(m, FindRsdp(m) + 16);
        uint madt = U32(m, rsdt + 40);
        Assert.That((Signature(m, madt), U32(m, madt + 36), U32(m, madt + 40)), Is.EqualTo(("APIC", 0xFEE0_0000u, 1u)));
        var entries = new List<string>();
        for (uint at = madt + 44; at < madt + U32(m, madt + 4); at += m[at + 1])
        {
            entries.Add(m[at] switch
            {
                0 => $"lapic processor={m[at + 2]} id={m[at + 3]} flags={U32(m, at + 4)}",
                1 => $"ioapic id={m[at + 2]} address=0x{U32(m, at + 4):x8} gsi={U32(m, at + 8)}",
                2 => $"override bus={m[at + 2]} irq={m[at + 3]} gsi={U32(m, at + 4)} flags=0x{BinaryPrimitives.ReadUInt16LittleEndian(m.AsSpan((int)at + 8)):x}",
                4 => $"nmi processor=0x{m[at + 2]:x2} lint={m[at + 5]}",
                _ => $"type {m[at]}",
            });
        }

        Assert.That(entries, Is.EqualTo(new[]
        {
            "lapic processor=0 id=0 flags=1", "lapic processor=1 id=1 flags=1",
            "ioapic id=2 address=0xfec00000 gsi=0",
            "override bus=0 irq=0 gsi=2 flags=0x0", "override bus=0 irq=9 gsi=9 flags=0xd",
            "nmi processor=0xff lint=1",
        }));
    }
}
