using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// Builds a case's memory image: the fixed GDT entries, random data frames, the page directory and tables (with a
/// model of the mapping, to place code and stack contents), and the set-up program.
/// </summary>
internal sealed class SystemImageBuilder
{
    public const uint P = 1, RW = 2, US = 4, PWT = 8, PCD = 0x10, A = 0x20, D = 0x40, PS = 0x80, G = 0x100;
    public const uint Cr0Pe = 1, Cr0Et = 0x10, Cr0Wp = 0x10000, Cr0Pg = 0x8000_0000;
    public const uint Cr4Pse = 0x10, Cr4Pge = 0x80, Cr4Smep = 0x10_0000;

    private SystemCase _c = null!;
    private int _tables;

    public SystemCase Case => _c;

    /// <summary>HLT everywhere, random data frames, the fixed GDT (null, ring-0 and ring-3 flat code and data, the LDT), empty paging structures.</summary>
    public void Begin(SystemCase c, ref CaseRandom r, uint ldtLimit = 8 * SystemLayout.LdtEntries - 1)
    {
        _c = c;
        _tables = 0;
        Span<byte> image = c.Image;
        image.Fill(0xF4);
        image.Slice((int)SystemLayout.Gdt, 0x3000 + 0x1000 * SystemLayout.PageTableCount).Clear(); // GDT, LDT, directory, tables
        for (int i = 0; i < SystemLayout.DataFrameCount * 0x1000; i += 4)
        {
            uint v = r.Chance(25) ? r.EdgeValue() : r.NextUInt32();
            BitConverter.TryWriteBytes(image[((int)SystemLayout.DataFrames + i)..], v);
        }
        SetGdt(1, Descriptors.Segment(0, 0xFFFFF, 0xB, true, 0, true, true, true));
        SetGdt(2, Descriptors.Segment(0, 0xFFFFF, 0x3, true, 0, true, true, true));
        SetGdt(3, Descriptors.Segment(0, 0xFFFFF, 0xB, true, 3, true, true, true));
        SetGdt(4, Descriptors.Segment(0, 0xFFFFF, 0x3, true, 3, true, true, true));
        SetGdt(5, Descriptors.Segment(SystemLayout.Ldt, ldtLimit, 0x2, false, 0, true, false, false));
        c.GdtLimit = 8 * SystemLayout.GdtEntries - 1;
    }

    public void SetGdt(int index, ulong descriptor) => BitConverter.TryWriteBytes(_c.Image.AsSpan((int)SystemLayout.Gdt + 8 * index), descriptor);
    public void SetLdt(int index, ulong descriptor) => BitConverter.TryWriteBytes(_c.Image.AsSpan((int)SystemLayout.Ldt + 8 * index), descriptor);

    public uint Read32(uint physical) => BitConverter.ToUInt32(_c.Image, (int)physical);
    public void Write32(uint physical, uint value) => BitConverter.TryWriteBytes(_c.Image.AsSpan((int)physical), value);

    public uint Pde(uint linear) => Read32(SystemLayout.PageDirectory + (linear >> 22) * 4);
    public void SetPde(uint linear, uint pde) => Write32(SystemLayout.PageDirectory + (linear >> 22) * 4, pde);

    /// <summary>Gives the 4 MiB region of <paramref name="linear"/> a fresh page table with the PDE flags given (P set). False when none is left.</summary>
    public bool NewTable(uint linear, uint pdeFlags)
    {
        if (_tables == SystemLayout.PageTableCount) return false;
        uint table = SystemLayout.PageTables + (uint)_tables++ * 0x1000;
        SetPde(linear, table | (pdeFlags & 0xFFF & ~PS) | P);
        return true;
    }

    /// <summary>Whether the region's PDE points to a page table (present, and PS clear or ignored).</summary>
    public bool HasTable(uint linear) => (Pde(linear) & P) != 0 && ((Pde(linear) & PS) == 0 || (_c.Cr4 & Cr4Pse) == 0)
        && (Pde(linear) & ~0xFFFu) >= SystemLayout.PageTables && (Pde(linear) & ~0xFFFu) < SystemLayout.PageTables + SystemLayout.PageTableCount * 0x1000;

    public void SetPte(uint linear, uint pte) => Write32((Pde(linear) & ~0xFFFu) + ((linear >> 12) & 0x3FF) * 4, pte);

    /// <summary>The physical address the image's paging structures map a linear address to (rights ignored); null if not present or paging is off and it is outside RAM.</summary>
    public uint? Translate(uint linear)
    {
        if ((_c.Cr0 & Cr0Pg) == 0) return linear;
        uint pde = Pde(linear);
        if ((pde & P) == 0) return null;
        if ((pde & PS) != 0 && (_c.Cr4 & Cr4Pse) != 0) return (pde & 0xFFC0_0000) | (linear & 0x3F_FFFF);
        uint table = pde & ~0xFFFu;
        if (table + 0x1000 > SystemLayout.ImageSize) return null;
        uint pte = Read32(table + ((linear >> 12) & 0x3FF) * 4);
        return (pte & P) == 0 ? null : (pte & ~0xFFFu) | (linear & 0xFFF);
    }

    /// <summary>Writes bytes at a linear address through the model, where it maps into the image or a case page; false if any byte could not be placed.</summary>
    public bool PokeLinear(uint linear, ReadOnlySpan<byte> bytes)
    {
        bool all = true;
        for (int i = 0; i < bytes.Length; i++)
        {
            if (Translate(linear + (uint)i) is not uint p) { all = false; continue; }
            if (p < SystemLayout.ImageSize) { _c.Image[p] = bytes[i]; continue; }
            int slot = _c.Pages.IndexOf(p & ~0xFFFu);
            if (slot >= 0) _c.PageSlot(slot)[(int)(p & 0xFFF)] = bytes[i];
            else all = false;
        }
        return all;
    }

    /// <summary>Adds a case page (see <see cref="SystemCase.Pages"/>), filled with random bytes, or HLT for code, when new.</summary>
    public void AddPage(uint physical, ref CaseRandom r, bool code = false)
    {
        int before = _c.Pages.Count;
        int slot = _c.AddPage(physical);
        if (slot < 0 || slot < before) return;
        Span<byte> bytes = _c.PageSlot(slot);
        if (code) { bytes.Fill(0xF4); return; }
        for (int i = 0; i < 0x1000; i += 4)
            BitConverter.TryWriteBytes(bytes[i..], r.Chance(25) ? r.EdgeValue() : r.NextUInt32());
    }

    public bool PokeLinear32(uint linear, uint value) => PokeLinear(linear, BitConverter.GetBytes(value));

    /// <summary>Encodes <paramref name="tests"/> one after the other from the case's <see cref="SystemCase.TestEip"/>, writes them there and adds them to the case's tests.</summary>
    public void PlaceTests(IEnumerable<Instruction> tests)
    {
        uint eip = _c.TestEip;
        foreach (Instruction t in tests)
        {
            Instruction done = Encode(t, eip, out byte[] bytes);
            _c.Tests.Add(done);
            PokeLinear(eip, bytes);
            eip += (uint)bytes.Length;
        }
    }

    /// <summary>
    /// The set-up program: LGDT, CR4, CR3, CR0 (paging may go on here: the set-up page, the GDT and the LDT must be
    /// mapped), a far JMP to reload CS, SS and the stack, LLDT, DS/ES/FS/GS, then SS and a far JMP to the test code at
    /// CPL 0, or an IRET to it at CPL 3. The set-up ends with EIP on the first test instruction.
    /// </summary>
    public void BuildStub()
    {
        SystemCase c = _c;
        BitConverter.TryWriteBytes(c.Image.AsSpan((int)SystemLayout.StubGdtr), c.GdtLimit);
        BitConverter.TryWriteBytes(c.Image.AsSpan((int)SystemLayout.StubGdtr + 2), SystemLayout.Gdt);
        BitConverter.TryWriteBytes(c.Image.AsSpan((int)SystemLayout.StubIdtr), c.IdtLimit);
        BitConverter.TryWriteBytes(c.Image.AsSpan((int)SystemLayout.StubIdtr + 2), c.IdtBase);
        const uint part2 = SystemLayout.Stub + 0x100;
        int count = 0;
        byte[] first = HybridVmm.Testing.GuestCode.Assemble(a =>
        {
            a.lgdt(__[SystemLayout.StubGdtr]);
            if (c.LoadIdt) { a.lidt(__[SystemLayout.StubIdtr]); count++; }
            a.mov(eax, c.Cr4); a.mov(cr4, eax);
            a.mov(eax, c.Cr3); a.mov(cr3, eax);
            a.mov(eax, c.Cr0); a.mov(cr0, eax);
            a.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, SystemLayout.KernelCode, part2));
            count += 8;
        }, SystemLayout.Stub);
        byte[] second = HybridVmm.Testing.GuestCode.Assemble(a =>
        {
            a.mov(ax, SystemLayout.KernelData); a.mov(ss, ax); a.mov(esp, SystemLayout.StubStackTop);
            a.mov(ax, c.Ldtr); a.lldt(ax);
            count += 5;
            if (c.Tr != 0) { a.mov(ax, c.Tr); a.ltr(ax); count += 2; }
            foreach (int s in (ReadOnlySpan<int>)[3, 0, 4, 5])
            {
                a.mov(ax, c.Selectors[s]);
                a.mov(s switch { 3 => ds, 0 => es, 4 => fs, _ => gs }, ax);
                count += 2;
            }
            if (c.Cpl == 0)
            {
                a.mov(ax, c.Selectors[2]); a.mov(ss, ax);
                a.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, c.Selectors[1], c.TestEip));
                count += 3;
            }
            else
            {
                a.push((int)c.Selectors[2]); a.push((int)c.Gprs[4]); a.push(2); a.push((int)c.Selectors[1]); a.push((int)c.TestEip);
                a.iretd();
                count += 6;
            }
        }, part2);
        first.CopyTo(c.Image, (int)SystemLayout.Stub);
        second.CopyTo(c.Image, (int)part2);
        c.StubInstructions = count;
    }

    /// <summary>Encodes an instruction at <paramref name="ip"/> and decodes it back (so it carries its IP and length).</summary>
    public static Instruction Encode(in Instruction instruction, uint ip, out byte[] bytes)
    {
        var writer = new CodeWriterImpl();
        var encoder = Encoder.Create(32, writer);
        encoder.Encode(instruction, ip);
        bytes = writer.Bytes.ToArray();
        var decoder = Decoder.Create(32, new ByteArrayCodeReader(bytes));
        decoder.IP = ip;
        return decoder.Decode();
    }

    private sealed class CodeWriterImpl : CodeWriter
    {
        public readonly List<byte> Bytes = [];
        public override void WriteByte(byte value) => Bytes.Add(value);
    }
}
