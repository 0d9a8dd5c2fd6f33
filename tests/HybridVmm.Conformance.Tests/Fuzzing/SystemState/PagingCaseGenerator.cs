using Iced.Intel;
using static HybridVmm.Conformance.Tests.Fuzzing.SystemState.SystemImageBuilder;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// Paging cases (SDM Vol. 3A, chapter 4): random two-level 32-bit page tables with 4 KiB pages and, under CR4.PSE,
/// 4 MiB pages, all identity mappings (see <see cref="SystemLayout"/>); random P, R/W, U/S, A, D, PS, PWT, PCD and G bits in both levels; CR0.WP, CR4.PGE and CR4.SMEP on
/// and off; CPL 0 or 3 (flat segments). The test instructions load, store, read-modify-write, push, pop, call,
/// jump, return and copy strings across mapped, read-only, supervisor and unmapped pages, often across a page
/// boundary, and are themselves fetched from random pages (sometimes straddling two).
/// </summary>
internal sealed class PagingCaseGenerator
{
    private readonly ulong _seed;
    private readonly SystemImageBuilder _b = new();
    private CaseRandom _r;
    private readonly List<uint> _dataPages = [];
    private uint _codePage;

    public PagingCaseGenerator(ulong seed) => _seed = seed;

    public void Generate(long index, SystemCase c)
    {
        _r = new CaseRandom(_seed, index);
        c.Reset(index);
        _b.Begin(c, ref _r);
        c.Cpl = _r.Chance(45) ? 3 : 0;
        c.Cr0 = Cr0Pe | Cr0Et | Cr0Pg | (_r.Chance(50) ? Cr0Wp : 0);
        c.Cr4 = (_r.Chance(60) ? Cr4Pse : 0) | (_r.Chance(30) ? Cr4Pge : 0) | (_r.Chance(10) ? Cr4Smep : 0);
        c.Cr3 = SystemLayout.PageDirectory | (_r.Chance(20) ? PWT | PCD : 0);
        ushort code = c.Cpl == 0 ? SystemLayout.KernelCode : SystemLayout.UserCode;
        ushort data = c.Cpl == 0 ? SystemLayout.KernelData : SystemLayout.UserData;
        c.Selectors[1] = code;
        c.Selectors[0] = c.Selectors[2] = c.Selectors[3] = c.Selectors[4] = c.Selectors[5] = data;

        // Region 0 maps the set-up page, the GDT and the LDT to themselves, with random U/S, A and D.
        _b.NewTable(0, RW | (_r.Chance(50) ? US : 0) | (_r.Chance(50) ? A : 0));
        foreach (uint page in (ReadOnlySpan<uint>)[SystemLayout.Stub, SystemLayout.Gdt, SystemLayout.Ldt])
            _b.SetPte(page, page | P | (page != SystemLayout.Gdt || _r.Chance(70) ? RW : 0)
                | RandomBits(((c.Cr4 & Cr4Smep) != 0 ? 0 : US) | A | D | G)); // SMEP would stop the set-up
        // Two flat data segments whose accessed bit is clear: loading one writes the GDT (an implicit supervisor
        // access, even at CPL 3), which a read-only GDT page refuses when CR0.WP=1.
        _b.SetGdt(6, Descriptors.Segment(0, 0xFFFFF, 0x2, true, 3, true, true, true));
        _b.SetGdt(7, Descriptors.Segment(0, 0xFFFFF, 0x2, true, 0, true, true, true));
        c.Notes.Add($"GDT PTE {_b.Read32(SystemLayout.PageTables + (SystemLayout.Gdt >> 12) * 4):x8}");
        c.Notes.Add($"PDE[000]={_b.Pde(0):x8}");

        // Regions 1-7 (RAM on both CPUs): each a page table, an identity 4 MiB page or not present. Regions 8 and up
        // are not present, with random bits.
        var tableRegions = new List<uint> { 0 };
        for (uint region = 1 << 22; region < SystemLayout.MemorySize; region += 1 << 22)
        {
            int kind = _r.Next(20);
            uint flags = RandomBits(A | PWT | PCD) | (_r.Chance(75) ? RW : 0) | (_r.Chance(75) ? US : 0);
            if (kind < 11) { _b.NewTable(region, flags); tableRegions.Add(region); }
            else if (kind < 17 && (c.Cr4 & Cr4Pse) != 0)
                _b.SetPde(region, region | P | PS | flags | RandomBits(D | G) | (_r.Chance(5) ? 1u << 21 : 0));
            else if (kind < 17) { _b.NewTable(region, flags); tableRegions.Add(region); }
            else _b.SetPde(region, _r.NextUInt32() & ~P);
            c.Notes.Add($"PDE[{region >> 22:x3}]={_b.Pde(region):x8}");
        }
        for (uint region = SystemLayout.MemorySize; region != 0; region += 1 << 22) _b.SetPde(region, _r.Chance(70) ? 0 : _r.NextUInt32() & ~P);

        // The code: two consecutive pages of a region with a page table.
        uint codeRegion = tableRegions[_r.Next(tableRegions.Count)];
        _codePage = codeRegion + ((uint)(codeRegion == 0 ? 0x100 + _r.Next(0x2FE) : _r.Next(1022)) << 12);
        _b.AddPage(_codePage, ref _r, code: true);
        _b.AddPage(_codePage + 0x1000, ref _r, code: true);
        _b.SetPte(_codePage, _codePage | (_r.Chance(96) ? P : 0) | UserBit(c, 90) | RandomBits(RW | A | D | G));
        _b.SetPte(_codePage + 0x1000, _codePage + 0x1000 | (_r.Chance(80) ? P : 0) | UserBit(c, 90) | RandomBits(RW | A | D | G));
        c.Notes.Add($"code PTEs {_codePage:x8}: {PteOf(_codePage)}, {PteOf(_codePage + 0x1000)}");

        // Six data pages, often in adjacent pairs so that an access can cross from one to the next; a few beyond RAM
        // (not present in the directory).
        _dataPages.Clear();
        while (_dataPages.Count < 6)
        {
            uint page = _r.Chance(5)
                ? SystemLayout.MemorySize + ((uint)_r.Next(0x3000) << 12)
                : SystemLayout.TestPagesBase + ((uint)_r.Next((int)((SystemLayout.MemorySize - SystemLayout.TestPagesBase) >> 12) - 1) << 12);
            if (page + 0x1000 >= _codePage && page <= _codePage + 0x1000 || _dataPages.Contains(page)) continue;
            _dataPages.Add(page);
            if (_r.Chance(40) && page + 0x2000 != _codePage && !_dataPages.Contains(page + 0x1000)) _dataPages.Add(page + 0x1000);
        }
        foreach (uint page in _dataPages)
        {
            for (uint p = page - 0x1000; p != page + 0x2000; p += 0x1000)
                if (p + 0x1000 < _codePage || p > _codePage + 0x1000) _b.AddPage(p, ref _r);
            if (!_b.HasTable(page)) continue;
            _b.SetPte(page, page | (_r.Chance(90) ? P : 0) | UserBit(c, 85) | RandomBits(RW | A | D | G | PWT | PCD) | (_r.Chance(30) ? RW : 0)
                | ((uint)_r.Next(8) << 9));
            c.Notes.Add($"PTE {page:x8}={PteOf(page)}");
        }

        for (int i = 0; i < 8; i++) c.Gprs[i] = _r.EdgeValue();
        c.Eflags = 2 | (_r.NextUInt32() & 0x8D5) | (_r.Chance(30) ? 0x400u : 0);
        c.Gprs[3] = DataAddress(4);  // EBX
        c.Gprs[5] = DataAddress(4);  // EBP
        c.Gprs[6] = DataAddress(4);  // ESI
        c.Gprs[7] = DataAddress(4);  // EDI
        c.Gprs[4] = StackAddress();  // ESP

        // One or two test instructions, the first at a random offset of the code page or straddling into the next.
        int instructions = _r.Chance(30) ? 2 : 1;
        var encoded = new List<(Instruction, byte[])>();
        uint eip = _codePage + (uint)_r.Next(0xE00);
        for (int i = 0; i < instructions; i++)
        {
            Instruction ins = Template(c, eip, i);
            if (i == 0 && _r.Chance(30))
            {
                // Straddle: end the first instruction 1..length-1 bytes into the second code page.
                Encode(ins, 0, out byte[] probe);
                if (probe.Length > 1) eip = _codePage + 0x1000 - (uint)(1 + _r.Next(probe.Length - 1));
            }
            Instruction done = Encode(ins, eip, out byte[] bytes);
            encoded.Add((done, bytes));
            if (i == 0) c.TestEip = eip;
            eip += (uint)bytes.Length;
        }
        foreach ((Instruction ins, byte[] bytes) in encoded)
        {
            c.Tests.Add(ins);
            _b.PokeLinear(ins.IP32, bytes);
        }
        _b.BuildStub();
    }

    private uint RandomBits(uint mask) => _r.NextUInt32() & mask;

    private uint UserBit(SystemCase c, int percentWhenUser) => _r.Chance(c.Cpl == 3 ? percentWhenUser : 50) ? US : 0;

    private string PteOf(uint linear)
    {
        uint table = _b.Pde(linear) & ~0xFFFu;
        return _b.Read32(table + ((linear >> 12) & 0x3FF) * 4).ToString("x8");
    }

    /// <summary>An address in a data page for an access of <paramref name="size"/> bytes, often at the end of the page (crossing into the next).</summary>
    private uint DataAddress(int size)
    {
        uint page = _dataPages[_r.Next(_dataPages.Count)];
        return _r.Next(4) switch
        {
            0 => page + 0x1000 - (uint)(1 + _r.Next(size + 2)),
            1 => page + (uint)_r.Next(4),
            _ => page + (uint)_r.Next(0x1000 - 8),
        };
    }

    private uint StackAddress()
    {
        uint page = _dataPages[_r.Next(_dataPages.Count)];
        return _r.Next(4) switch
        {
            0 => page + (uint)_r.Next(6),             // a push crosses down into the previous page
            1 => page + 0x1000 - (uint)_r.Next(6),    // a pop crosses up into the next page
            _ => page + ((uint)_r.Next(0x3F0) << 2),
        };
    }

    /// <summary>A branch target: the code pages (HLT bytes, or the test code), the set-up page, or a page beyond RAM (never a data page's random bytes).</summary>
    private uint BranchTarget() => _r.Next(4) switch
    {
        0 => _codePage + 0xE40 + (uint)_r.Next(0x1A0),          // HLT bytes past the test code
        1 => _codePage + 0x1000 + 0x40 + (uint)_r.Next(0xFC0),  // HLT bytes past a straddling test

        2 => SystemLayout.Stub + 0xF00,
        _ => SystemLayout.MemorySize + (_r.NextUInt32() % (0xFFFF_FFFF - SystemLayout.MemorySize)),
    };

    private Instruction Template(SystemCase c, uint eip, int position)
    {
        Register b = position == 0 ? Register.EBX : Register.EBP;
        var m = new MemoryOperand(b);
        Register r32 = _r.Chance(50) ? Register.EAX : Register.EDX;
        int template = _r.Next(26);
        // RET, CALL r/m32 and REP only first: after another instruction the stack, EBP or ECX they use may have moved,
        // and a branch to a data page's random bytes, or a REP of 2^32 iterations, is not a useful case.
        if (position > 0 && template is 11 or 13 or 22) template = 17;
        switch (template)
        {
            case 0: return _r.Next(3) switch
            {
                0 => Instruction.Create(Code.Mov_r8_rm8, Register.CL, m),
                1 => Instruction.Create(Code.Mov_r16_rm16, Register.CX, m),
                _ => Instruction.Create(Code.Mov_r32_rm32, r32, m),
            };
            case 1: return _r.Next(3) switch
            {
                0 => Instruction.Create(Code.Mov_rm8_r8, m, Register.AL),
                1 => Instruction.Create(Code.Mov_rm16_r16, m, Register.DX),
                _ => Instruction.Create(Code.Mov_rm32_r32, m, r32),
            };
            case 2:
            {
                Instruction ins = Instruction.Create(Code.Add_rm32_r32, m, Register.ECX);
                ins.HasLockPrefix = _r.Chance(30);
                return ins;
            }
            case 3: return _r.Chance(50) ? Instruction.Create(Code.Inc_rm32, m) : Instruction.Create(Code.Not_rm8, m);
            case 4: return Instruction.Create(Code.Xchg_rm32_r32, m, Register.EAX);
            case 5: return Instruction.Create(Code.Push_r32, r32);
            case 6: return Instruction.Create(Code.Pop_r32, r32);
            case 7: return Instruction.Create(Code.Push_rm32, m);
            case 8: return Instruction.Create(Code.Pop_rm32, m);
            case 9: return Instruction.CreateBranch(Code.Call_rel32_32, BranchTarget());
            case 10: return Instruction.CreateBranch(Code.Jmp_rel32_32, BranchTarget());
            case 11:
                _b.PokeLinear32(c.Gprs[4], BranchTarget());
                return Instruction.Create(Code.Retnd);
            case 12: return _r.Next(3) switch
            {
                0 => Instruction.CreateMovsb(32),
                1 => Instruction.CreateMovsw(32),
                _ => Instruction.CreateMovsd(32),
            };
            case 13:
                c.Gprs[1] = (uint)(1 + _r.Next(24));
                return _r.Chance(50) ? Instruction.CreateMovsb(32, repPrefix: RepPrefixKind.Repe) : Instruction.CreateStosd(32, RepPrefixKind.Repe);
            case 14: return _r.Chance(50) ? Instruction.CreateStosd(32) : Instruction.CreateStosb(32);
            case 15: return Instruction.CreateLodsd(32);
            case 16: return Instruction.Create(Code.Cmpxchg_rm32_r32, m, Register.ECX);
            case 17: return Instruction.Create(Code.Nopd);
            case 18: return _r.Chance(50) ? Instruction.Create(Code.Enterd_imm16_imm8, 8, _r.Next(3)) : Instruction.Create(Code.Leaved);
            case 19: return Instruction.Create(Code.Cmpxchg8b_m64, m);
            case 20: return Instruction.Create(Code.Mov_rm32_imm32, m, _r.NextUInt32());
            case 21:
            {
                Instruction ins = Instruction.Create(Code.Xadd_rm32_r32, m, Register.ESI);
                ins.HasLockPrefix = true;
                return ins;
            }
            case 22:
            {
                uint target = BranchTarget();
                uint address = position == 0 ? c.Gprs[3] : c.Gprs[5];
                _b.PokeLinear32(address, target);
                return Instruction.Create(Code.Call_rm32, m);
            }
            case 24:
            {
                // A segment load: the descriptor read (and the accessed-bit write) go through paging as supervisor accesses.
                ushort selector = _r.Next(4) switch { 0 => 0x33, 1 => 0x38, 2 => (ushort)(c.Cpl == 0 ? 0x10 : 0x23), _ => (ushort)(0x30 | _r.Next(4)) };
                c.Gprs[0] = (c.Gprs[0] & 0xFFFF_0000) | selector;
                Register[] sregs = [Register.DS, Register.ES, Register.FS, Register.GS];
                return Instruction.Create(Code.Mov_Sreg_r32m16, sregs[_r.Next(4)], Register.EAX);
            }
            case 25:
            {
                ushort selector = (ushort)((_r.Next(8) << 3) | _r.Next(4));
                c.Gprs[1] = (c.Gprs[1] & 0xFFFF_0000) | selector;
                return _r.Chance(50) ? Instruction.Create(Code.Lsl_r32_r32m16, Register.EDX, Register.ECX) : Instruction.Create(Code.Lar_r32_r32m16, Register.EDX, Register.ECX);
            }
            default: return Instruction.Create(Code.Bts_rm32_imm8, m, _r.Next(32));
        }
    }
}
