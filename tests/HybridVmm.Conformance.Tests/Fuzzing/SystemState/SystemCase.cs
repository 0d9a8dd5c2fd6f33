using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>One generated system-state case (see <see cref="SystemLayout"/>).</summary>
internal sealed class SystemCase
{
    public long Index;
    /// <summary>Physical memory [0, ImageSize) at the start of the case.</summary>
    public readonly byte[] Image = new byte[SystemLayout.ImageSize];
    /// <summary>Further 4 KiB pages (physical addresses above the image) the case fills at its start and compares at its end.</summary>
    public readonly List<uint> Pages = [];
    /// <summary>Contents of <see cref="Pages"/>, 4 KiB each, in order.</summary>
    public readonly byte[] PageBytes = new byte[32 * 0x1000];
    /// <summary>Instructions of the set-up program at <see cref="SystemLayout.Stub"/> (it ends on the first test instruction).</summary>
    public int StubInstructions;
    public uint Cr0, Cr3, Cr4;
    public int Cpl;
    /// <summary>Selectors the set-up loads: ES, CS, SS, DS, FS, GS (Sreg order), and LDTR.</summary>
    public readonly ushort[] Selectors = new ushort[6];
    public ushort Ldtr;
    public ushort GdtLimit;
    /// <summary>The TSS the set-up loads with LTR after LLDT (0: no LTR, TR keeps its reset value).</summary>
    public ushort Tr;
    /// <summary>Whether the set-up loads IDTR (LIDT, after LGDT) with <see cref="IdtBase"/> and <see cref="IdtLimit"/>.</summary>
    public bool LoadIdt;
    public uint IdtBase;
    public ushort IdtLimit;
    /// <summary>Compare GDTR, IDTR, LDTR and TR after every step (the set-up defines all four).</summary>
    public bool CompareTables;
    /// <summary>Registers and flags the test instructions start from (written after the set-up).</summary>
    public readonly uint[] Gprs = new uint[8];
    public uint Eflags;
    /// <summary>EIP (CS offset) of the first test instruction, and the test instructions in order.</summary>
    public uint TestEip;
    public readonly List<Instruction> Tests = [];
    /// <summary>What the generator set up that matters to this case, for the reproducer.</summary>
    public readonly List<string> Notes = [];

    public void Reset(long index)
    {
        Index = index;
        Tests.Clear();
        Notes.Clear();
        Pages.Clear();
        Array.Clear(Gprs);
        Array.Clear(Selectors);
        Ldtr = 0;
        Tr = 0;
        LoadIdt = CompareTables = false;
        IdtBase = IdtLimit = 0;
    }

    /// <summary>Adds a page to fill and compare (once); returns its slot in <see cref="PageBytes"/>, or -1 if full or inside the image.</summary>
    public int AddPage(uint physical)
    {
        physical &= ~0xFFFu;
        if (physical < SystemLayout.TestPagesBase || physical >= SystemLayout.MemorySize) return -1;
        int slot = Pages.IndexOf(physical);
        if (slot >= 0) return slot;
        if (Pages.Count == PageBytes.Length / 0x1000) return -1;
        Pages.Add(physical);
        return Pages.Count - 1;
    }

    public Span<byte> PageSlot(int slot) => PageBytes.AsSpan(slot * 0x1000, 0x1000);

    public ulong GdtEntry(int index) => BitConverter.ToUInt64(Image, (int)SystemLayout.Gdt + 8 * index);
    public ulong LdtEntry(int index) => BitConverter.ToUInt64(Image, (int)SystemLayout.Ldt + 8 * index);

    /// <summary>The descriptor a selector names in this case's initial tables, or null (null selector, beyond the table's limit).</summary>
    public ulong? DescriptorOf(ushort selector)
    {
        int index = selector >> 3;
        if ((selector & 4) == 0)
        {
            if (index == 0 || index * 8 + 7 > GdtLimit) return null;
            return GdtEntry(index);
        }
        if (Ldtr == 0) return null;
        Descriptors.Decoded ldt = Descriptors.Decode(GdtEntry(Ldtr >> 3));
        if (index * 8 + 7 > ldt.Limit) return null;
        return LdtEntry(index);
    }

    public string Disassembly()
    {
        var formatter = new IntelFormatter();
        var output = new StringOutput();
        var parts = new List<string>();
        foreach (Instruction ins in Tests)
        {
            formatter.Format(ins, output);
            parts.Add($"{output.ToStringAndReset()} @{ins.IP32:x8}");
        }
        return string.Join(" ; ", parts);
    }
}
