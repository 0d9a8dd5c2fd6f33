using Iced.Intel;
using static HybridVmm.Conformance.Tests.Fuzzing.SystemState.SystemImageBuilder;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// System-instruction cases (SDM Vol. 2 for each instruction; Vol. 3A chapters 2, 3, 5 and 6; Vol. 1, 18.5), paging
/// off, at CPL 0 or 3 and every IOPL: a GDT of random code, data, LDT and TSS descriptors, gates and reserved system
/// types, a random LDT, a TSS loaded by the set-up (32-bit or 16-bit, a random limit, a random I/O permission bitmap)
/// and a random IDTR. The tests: LAR, LSL, VERR, VERW and ARPL on random selectors; SMSW, SGDT, SIDT, SLDT and STR;
/// LLDT and LTR (then LAR through the new LDT, and the TSS's busy bit in memory); LGDT and LIDT; CLI, STI, PUSHF and
/// POPF; IN, OUT, INS and OUTS against IOPL and the I/O bitmap; MOV to and from CR0, CR2, CR3 and CR4, CLTS, INVLPG,
/// WBINVD, INVD and RDTSC. GDTR, IDTR, LDTR and TR are compared after every step.
/// </summary>
internal sealed partial class SystemInstructionCaseGenerator
{
    private readonly ulong _seed;
    private readonly SystemImageBuilder _b = new();
    private CaseRandom _r;
    private SystemCase _c = null!;
    private uint _data, _code, _testPage;
    private uint _tssLimit;

    /// <summary>The GDT entry of the TSS the set-up loads into TR.</summary>
    public const int SetupTssIndex = SystemLayout.GdtEntries - 1;

    /// <summary>The CR4 bits the core implements (X86Core.DataTransfer.cs, Cr4Supported) that Unicorn's Haswell model also has: not SMAP.</summary>
    public const uint Cr4Generated = 0x10 | 0x20 | 0x80 | 0x200 | 0x10_0000; // PSE PAE PGE OSFXSR SMEP

    public SystemInstructionCaseGenerator(ulong seed) => _seed = seed;

    public void Generate(long index, SystemCase c)
    {
        _r = new CaseRandom(_seed, index);
        _c = c;
        c.Reset(index);
        uint ldtEntries = (uint)(_r.Chance(80) ? SystemLayout.LdtEntries : 1 + _r.Next(SystemLayout.LdtEntries));
        _b.Begin(c, ref _r, ldtLimit: ldtEntries * 8 - 1);
        c.CompareTables = true;
        c.Cpl = _r.Chance(50) ? 3 : 0;
        c.Cr0 = Cr0Pe | Cr0Et | (_r.Chance(50) ? Cr0Wp : 0) | (_r.Chance(30) ? 0x20u : 0) | (_r.Chance(20) ? 0x2u : 0) | (_r.Chance(15) ? 0x8u : 0);
        c.Cr3 = _r.Chance(50) ? 0 : _r.NextUInt32() & 0xFFFF_F018;
        c.Cr4 = _r.NextUInt32() & Cr4Generated;
        c.Ldtr = _r.Chance(85) ? SystemLayout.LdtSelector : (ushort)_r.Next(4);

        int third = (int)((SystemLayout.MemorySize - SystemLayout.TestPagesBase) >> 12) / 3;
        _data = SystemLayout.TestPagesBase + 0x1000 + ((uint)_r.Next(third - 8) << 12);
        _code = SystemLayout.TestPagesBase + ((uint)(third + _r.Next(third - 8)) << 12);
        _testPage = SystemLayout.TestPagesBase + ((uint)(2 * third + _r.Next(third - 8)) << 12);
        for (uint p = _data - 0x1000; p < _data + 0x5000; p += 0x1000) _b.AddPage(p, ref _r);
        _b.AddPage(_testPage, ref _r, code: true);
        _b.AddPage(_testPage + 0x1000, ref _r, code: true);

        FillTssArea();
        for (int i = SystemLayout.FirstRandomGdtIndex; i < SetupTssIndex; i++) _b.SetGdt(i, RandomDescriptor());
        for (int i = 0; i < SystemLayout.LdtEntries; i++) _b.SetLdt(i, RandomSegment());
        SetupTss();

        // IDTR: a random base and limit 0, so no exception is delivered (the first one stops both CPUs); SIDT shows it.
        c.LoadIdt = true;
        c.IdtBase = _r.Chance(50) ? _r.NextUInt32() : SystemLayout.Idt;
        c.IdtLimit = 0;

        ushort code = c.Cpl == 0 ? SystemLayout.KernelCode : SystemLayout.UserCode;
        ushort data = c.Cpl == 0 ? SystemLayout.KernelData : SystemLayout.UserData;
        c.Selectors[1] = code;
        c.Selectors[0] = c.Selectors[2] = c.Selectors[3] = c.Selectors[4] = c.Selectors[5] = data;

        for (int i = 0; i < 8; i++) c.Gprs[i] = _r.EdgeValue();
        c.Gprs[4] = _data + 0x800 + ((uint)_r.Next(0x200) << 2);
        // Status flags, DF, IF, IOPL, NT, AC and ID at random (CR0.AM is off, so AC checks nothing).
        c.Eflags = 2 | (_r.NextUInt32() & 0x8D5) | (_r.Chance(30) ? 0x400u : 0) | (_r.Chance(50) ? 0x200u : 0)
            | ((uint)_r.Next(4) << 12) | (_r.Chance(10) ? 0x4000u : 0) | (_r.Chance(20) ? 0x4_0000u : 0) | (_r.Chance(20) ? 0x20_0000u : 0);
        c.TestEip = _testPage + (uint)_r.Next(0x800);

        var tests = new List<Instruction>();
        BuildTests(tests);
        _b.PlaceTests(tests);
        c.Notes.Add($"iopl {(c.Eflags >> 12) & 3}, tr {c.Tr:x2}: {Descriptors.Describe(c.GdtEntry(SetupTssIndex))}, I/O map base {BitConverter.ToUInt16(c.Image, (int)SystemLayout.TssArea + 0x66):x4}");
        c.Notes.Add($"gdt limit {c.GdtLimit:x}, ldt limit {ldtEntries * 8 - 1:x}, ldtr {c.Ldtr:x2}, idtr {c.IdtBase:x8}:{c.IdtLimit:x}, data region {_data:x8}");
        _b.BuildStub();
    }

    // ---- Tables ----

    /// <summary>The TSS area: random bytes, so that a TSS's I/O map base and bitmap are random; bitmap bytes biased to 00 and FF.</summary>
    private void FillTssArea()
    {
        Span<byte> area = _c.Image.AsSpan((int)SystemLayout.TssArea, (int)SystemLayout.TssAreaSize);
        for (int i = 0; i < area.Length; i++) area[i] = (byte)(_r.Next(4) switch { 0 => 0x00, 1 => 0xFF, _ => _r.Next(256) });
    }

    /// <summary>The TSS the set-up loads: 32-bit (10 % 16-bit), at the TSS area's start, a random limit and I/O map base.</summary>
    private void SetupTss()
    {
        bool tss32 = _r.Chance(90);
        _tssLimit = _r.Next(10) switch
        {
            0 => 0x67 + (uint)_r.Next(0x10),
            1 => (uint)_r.Next(0x67),                  // too short for an I/O bitmap: IN/OUT above IOPL fault
            _ => 0x67 + (uint)_r.Next((int)SystemLayout.TssAreaSize - 0x68),
        };
        uint mapBase = _r.Next(5) switch
        {
            0 or 1 => 0x68,
            2 => (uint)_r.Next((int)_tssLimit + 1),
            3 => _tssLimit + (uint)_r.Next(0x40),      // beyond the limit: every port faults
            _ => _r.NextUInt32() & 0xFFFF,
        };
        BitConverter.TryWriteBytes(_c.Image.AsSpan((int)SystemLayout.TssArea + 0x66), (ushort)mapBase);
        _b.SetGdt(SetupTssIndex, Descriptors.Segment(SystemLayout.TssArea, _tssLimit, tss32 ? 0x9 : 0x1, false, _r.Next(4), true, false, false));
        _c.Tr = (ushort)((SetupTssIndex << 3) | _r.Next(4));
    }

    private uint RandomBase(bool code) => (code ? _code : _data) + (uint)_r.Next(0x1000);

    /// <summary>A code or data segment of any type, DPL and limit, present 90 % of the time.</summary>
    private ulong RandomSegment()
    {
        bool code = _r.Chance(40);
        int type = code ? 8 + _r.Next(8) : _r.Next(8);
        (uint limit, bool g) = _r.Next(4) switch
        {
            0 => (0xFFFFFu, true),
            1 => ((uint)_r.Next(3), true),
            _ => ((uint)_r.Next(0x2400), false),
        };
        return Descriptors.Segment(RandomBase(code), limit, type, true, _r.Next(4), _r.Chance(90), db: _r.Chance(80), g, avl: _r.Chance(20));
    }

    /// <summary>Code and data segments, LDT and TSS descriptors (available and busy, 16- and 32-bit), gates and reserved system types.</summary>
    private ulong RandomDescriptor()
    {
        int dpl = _r.Next(4);
        bool present = _r.Chance(85);
        switch (_r.Next(20))
        {
            case < 7:
                return RandomSegment();
            case < 11:
            {
                // An LDT: the case's LDT, or random bytes in the data region read as descriptors.
                uint baseAddress = _r.Chance(60) ? SystemLayout.Ldt : _data + (uint)_r.Next(0x4000);
                uint limit = _r.Chance(70) ? 8u * (uint)(1 + _r.Next(SystemLayout.LdtEntries)) - 1 : (uint)_r.Next(0x100);
                return Descriptors.Segment(baseAddress, limit, 0x2, false, dpl, present, false, false, avl: _r.Chance(20));
            }
            case < 16:
            {
                int[] types = [0x9, 0x9, 0x1, 0xB, 0x3];
                uint baseAddress = SystemLayout.TssArea + (uint)_r.Next(0x800);
                uint limit = _r.Chance(80) ? 0x67 + (uint)_r.Next(0x800) : (uint)_r.Next(0x67);
                return Descriptors.Segment(baseAddress, limit, types[_r.Next(types.Length)], false, dpl, present, false, _r.Chance(10));
            }
            case < 18:
            {
                int[] gates = [0x4, 0xC, 0x5, 0x6, 0x7, 0xE, 0xF];
                return Descriptors.Gate((ushort)RandomSelector(), _r.NextUInt32(), gates[_r.Next(gates.Length)], dpl, present, _r.Next(4));
            }
            default:
            {
                int[] reserved = [0x0, 0x8, 0xA, 0xD];
                return Descriptors.Segment(_r.NextUInt32(), (uint)_r.Next(0x100000), reserved[_r.Next(reserved.Length)], false, dpl, present, _r.Chance(50), _r.Chance(50));
            }
        }
    }

    private ushort RandomSelector() => _r.Next(12) switch
    {
        0 => (ushort)_r.Next(4),                                          // null, with any RPL
        1 => (ushort)((_r.Next(0x2000) << 3) | _r.Next(8)),               // anything, mostly beyond the limits
        2 => (ushort)((_r.Next(6) << 3) | _r.Next(4)),                    // the fixed GDT entries
        3 => (ushort)((SetupTssIndex << 3) | _r.Next(4)),                 // the set-up's TSS (busy after its LTR)
        4 or 5 or 6 or 7 => (ushort)(((SystemLayout.FirstRandomGdtIndex + _r.Next(SystemLayout.GdtEntries - SystemLayout.FirstRandomGdtIndex)) << 3) | _r.Next(4)),
        8 => (ushort)((_r.Next(SystemLayout.GdtEntries + 2) << 3) | 4 | _r.Next(4)), // the LDT bit on a GDT-sized index
        _ => (ushort)((_r.Next(SystemLayout.LdtEntries) << 3) | 4 | _r.Next(4)),
    };

    // ---- Tests ----

    /// <summary>A 16-bit memory operand through the flat DS at [ESI], ESI in the data region.</summary>
    private MemoryOperand DataOperand(uint offsetMax = 0xE00)
    {
        _c.Gprs[6] = _data + 0x100 + (uint)_r.Next((int)offsetMax);
        return new MemoryOperand(Register.ESI, Register.None, 1, 0, 0, false, Register.None);
    }

    private void SetWord(int gpr, ushort value) => _c.Gprs[gpr] = (_c.Gprs[gpr] & 0xFFFF_0000) | value;

    /// <summary>
    /// Adds <paramref name="code"/> (an r/m16 form) with <paramref name="value"/> as its operand: in <paramref name="memoryChance"/>
    /// % of cases a word at a random data operand, else the 16-bit register numbered <paramref name="gpr"/>.
    /// </summary>
    private void AddWithWordOperand(List<Instruction> tests, Code code, ushort value, int memoryChance, int gpr)
    {
        if (_r.Chance(memoryChance))
        {
            MemoryOperand m = DataOperand();
            _b.PokeLinear(_c.Gprs[6], BitConverter.GetBytes(value));
            tests.Add(Instruction.Create(code, m));
        }
        else
        {
            SetWord(gpr, value);
            tests.Add(Instruction.Create(code, Register.AX + gpr));
        }
    }

    private void BuildTests(List<Instruction> tests)
    {
        switch (_r.Next(22))
        {
            case < 3: Inspection(tests); break;
            case < 5: Lldt(tests); break;
            case < 7: Ltr(tests); break;
            case < 9: Stores(tests); break;
            case < 10: LoadTables(tests); break;
            case < 13: FlagsAndInterruptFlag(tests); break;
            case < 16: PortIo(tests); break;
            case < 18: SoftwareInterrupt(tests); break;
            default: ControlRegisters(tests); break;
        }
    }

    /// <summary>LAR, LSL, VERR, VERW and ARPL on a random selector, from a register or memory.</summary>
    private void Inspection(List<Instruction> tests)
    {
        ushort selector = _r.Chance(15) ? _c.Selectors[_r.Next(6)] : RandomSelector();
        Note(selector);
        bool memory = _r.Chance(25);
        MemoryOperand m = default;
        if (memory)
        {
            m = DataOperand();
            _b.PokeLinear(_c.Gprs[6], BitConverter.GetBytes(selector));
        }
        SetWord(3, selector);
        SetWord(1, (ushort)_r.Next(0x10000));
        tests.Add((_r.Next(8), memory) switch
        {
            (0, false) => Instruction.Create(Code.Lar_r32_r32m16, Register.EAX, Register.EBX),
            (0, true) => Instruction.Create(Code.Lar_r32_r32m16, Register.EAX, m),
            (1, false) => Instruction.Create(Code.Lar_r16_rm16, Register.AX, Register.BX),
            (1, true) => Instruction.Create(Code.Lar_r16_rm16, Register.AX, m),
            (2, false) => Instruction.Create(Code.Lsl_r32_r32m16, Register.EDX, Register.EBX),
            (2, true) => Instruction.Create(Code.Lsl_r32_r32m16, Register.EDX, m),
            (3, _) => memory ? Instruction.Create(Code.Lsl_r16_rm16, Register.DX, m) : Instruction.Create(Code.Lsl_r16_rm16, Register.DX, Register.BX),
            (4, _) => memory ? Instruction.Create(Code.Verr_rm16, m) : Instruction.Create(Code.Verr_rm16, Register.BX),
            (5, _) => memory ? Instruction.Create(Code.Verw_rm16, m) : Instruction.Create(Code.Verw_rm16, Register.BX),
            (_, false) => Instruction.Create(Code.Arpl_rm16_r16, Register.BX, Register.CX),
            (_, true) => Instruction.Create(Code.Arpl_rm16_r16, m, Register.CX),
        });
    }

    /// <summary>LLDT with a random selector (#GP at CPL 3), then LAR or a segment load through the new LDT.</summary>
    private void Lldt(List<Instruction> tests)
    {
        ushort selector = _r.Chance(70) ? LdtSelector() : RandomSelector();
        Note(selector);
        AddWithWordOperand(tests, Code.Lldt_rm16, selector, memoryChance: 25, gpr: 0);
        ushort inLdt = (ushort)((_r.Next(SystemLayout.LdtEntries + 2) << 3) | 4 | _r.Next(4));
        SetWord(3, inLdt);
        tests.Add(_r.Chance(60) ? Instruction.Create(Code.Lar_r32_r32m16, Register.ECX, Register.EBX) : Instruction.Create(Code.Lsl_r32_r32m16, Register.ECX, Register.EBX));
    }

    /// <summary>A selector of an LDT descriptor in the GDT (else a random one).</summary>
    private ushort LdtSelector()
    {
        for (int attempt = 0; attempt < 20; attempt++)
        {
            int index = SystemLayout.FirstRandomGdtIndex - 1 + _r.Next(SystemLayout.GdtEntries - SystemLayout.FirstRandomGdtIndex + 1);
            if (Descriptors.Decode(_c.GdtEntry(index)) is { S: false, Type: 2 }) return (ushort)((index << 3) | _r.Next(4));
        }
        return RandomSelector();
    }

    /// <summary>LTR with a random selector, mostly a TSS descriptor (#GP at CPL 3; a busy one, #GP; not present, #NP).</summary>
    private void Ltr(List<Instruction> tests)
    {
        ushort selector = RandomSelector();
        if (_r.Chance(70))
        {
            for (int attempt = 0; attempt < 20; attempt++)
            {
                int index = SystemLayout.FirstRandomGdtIndex + _r.Next(SystemLayout.GdtEntries - SystemLayout.FirstRandomGdtIndex);
                if (Descriptors.Decode(_c.GdtEntry(index)) is { S: false, Type: 1 or 3 or 9 or 0xB })
                {
                    selector = (ushort)((index << 3) | _r.Next(4));
                    break;
                }
            }
        }
        Note(selector);
        AddWithWordOperand(tests, Code.Ltr_rm16, selector, memoryChance: 25, gpr: 2);
        if (_r.Chance(50)) tests.Add(Instruction.Create(Code.Str_r32m16, Register.EAX));
    }

    /// <summary>SMSW, SLDT, STR to a 16- or 32-bit register or a word in memory; SGDT and SIDT (16- and 32-bit operand size).</summary>
    private void Stores(List<Instruction> tests)
    {
        MemoryOperand m = DataOperand();
        tests.Add(_r.Next(13) switch
        {
            0 => Instruction.Create(Code.Smsw_rm16, Register.DX),
            1 => Instruction.Create(Code.Smsw_r32m16, Register.EDX),
            2 => Instruction.Create(Code.Smsw_rm16, m),
            3 => Instruction.Create(Code.Sldt_rm16, Register.AX),
            4 => Instruction.Create(Code.Sldt_r32m16, Register.EAX),
            5 => Instruction.Create(Code.Sldt_rm16, m),
            6 => Instruction.Create(Code.Str_rm16, Register.CX),
            7 => Instruction.Create(Code.Str_r32m16, Register.ECX),
            8 => Instruction.Create(Code.Str_rm16, m),
            9 => Instruction.Create(Code.Sgdt_m1632, m),
            10 => Instruction.Create(Code.Sgdt_m1632_16, m),
            11 => Instruction.Create(Code.Sidt_m1632, m),
            _ => Instruction.Create(Code.Sidt_m1632_16, m),
        });
    }

    /// <summary>
    /// LGDT and LIDT from random memory (16- and 32-bit operand size): #GP(0) at CPL 3. At CPL 0 it is the last test
    /// instruction, followed by SGDT or SIDT at CPL 3 never; the registers are compared.
    /// </summary>
    private void LoadTables(List<Instruction> tests)
    {
        MemoryOperand m = DataOperand();
        bool idt = _r.Chance(50);
        bool o16 = _r.Chance(30);
        // A LIDT at CPL 0 with a nonzero limit would make the core deliver later exceptions through a random IDT; the
        // table is compared right after, and the next instruction the harness fetches is a HLT (no exception at CPL 0).
        tests.Add(Instruction.Create(idt ? (o16 ? Code.Lidt_m1632_16 : Code.Lidt_m1632) : (o16 ? Code.Lgdt_m1632_16 : Code.Lgdt_m1632), m));
    }

    /// <summary>Names the descriptor a selector refers to, for the reproducer.</summary>
    private void Note(ushort selector)
    {
        if (_c.DescriptorOf(selector) is ulong d) _c.Notes.Add($"selector {selector:x4}: {Descriptors.Describe(d)}");
        else _c.Notes.Add($"selector {selector:x4}: null or beyond its table's limit");
    }
}
