using Iced.Intel;
using static HybridVmm.Conformance.Tests.Fuzzing.SystemState.SystemImageBuilder;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// Segmentation cases (SDM Vol. 3A, chapters 3 and 5), paging off: a GDT and an LDT of random descriptors (code and
/// data of every type, expand-down, byte and page granularity, 16- and 32-bit, every DPL, present or not; LDT and TSS
/// descriptors; call, task, interrupt and trap gates), random GDTR and LDT limits, DS/ES/FS/GS preloaded with random
/// selectors at CPL 0 or 3. The test loads a segment register (MOV, POP, LDS/LES/LFS/LGS/LSS) and then accesses
/// memory through it, accesses memory through a preloaded segment near its limit, runs LAR/LSL/VERR/VERW/ARPL on
/// random selectors, or transfers control far (JMP, CALL, RETF, through call gates too).
/// </summary>
internal sealed class SegmentationCaseGenerator
{
    private readonly ulong _seed;
    private readonly SystemImageBuilder _b = new();
    private CaseRandom _r;
    private SystemCase _c = null!;
    // The data region (random bytes) that data-segment bases point into, and the code region (HLT) of code-segment bases.
    private uint _data, _code, _testPage;

    public SegmentationCaseGenerator(ulong seed) => _seed = seed;

    private static readonly Register[] LoadableSregs = [Register.DS, Register.ES, Register.FS, Register.GS, Register.SS];

    public void Generate(long index, SystemCase c)
    {
        _r = new CaseRandom(_seed, index);
        _c = c;
        c.Reset(index);
        uint ldtEntries = (uint)(_r.Chance(80) ? SystemLayout.LdtEntries : 1 + _r.Next(SystemLayout.LdtEntries));
        _b.Begin(c, ref _r, ldtLimit: ldtEntries * 8 - 1);
        c.Cpl = _r.Chance(40) ? 3 : 0;
        c.Cr0 = Cr0Pe | Cr0Et | (_r.Chance(50) ? Cr0Wp : 0);
        c.Cr3 = 0;
        c.Cr4 = 0;
        if (_r.Chance(15)) c.GdtLimit = (ushort)(8 * (SystemLayout.FirstRandomGdtIndex + _r.Next(SystemLayout.GdtEntries - SystemLayout.FirstRandomGdtIndex)) - 1);
        c.Ldtr = _r.Chance(90) ? SystemLayout.LdtSelector : (ushort)0;

        // Regions: data (6 pages of random bytes), code (2 pages of HLT) and the test code's page.
        int third = (int)((SystemLayout.MemorySize - SystemLayout.TestPagesBase) >> 12) / 3;
        _data = SystemLayout.TestPagesBase + 0x1000 + ((uint)_r.Next(third - 8) << 12);
        _code = SystemLayout.TestPagesBase + ((uint)(third + _r.Next(third - 8)) << 12);
        _testPage = SystemLayout.TestPagesBase + ((uint)(2 * third + _r.Next(third - 8)) << 12);
        for (uint p = _data - 0x1000; p < _data + 0x5000; p += 0x1000) _b.AddPage(p, ref _r);
        // Four pages of HLT: a far transfer lands at a code-segment base (below +0x1000) plus an offset below 0x3000.
        for (uint p = _code; p < _code + 0x4000; p += 0x1000) _b.AddPage(p, ref _r, code: true);
        _b.AddPage(_testPage, ref _r, code: true);
        _b.AddPage(_testPage + 0x1000, ref _r, code: true);

        for (int i = SystemLayout.FirstRandomGdtIndex; i < SystemLayout.GdtEntries; i++) _b.SetGdt(i, RandomDescriptor());
        for (int i = 0; i < SystemLayout.LdtEntries; i++) _b.SetLdt(i, RandomDescriptor());
        AvoidInnerRingCallGates();

        ushort code = c.Cpl == 0 ? SystemLayout.KernelCode : SystemLayout.UserCode;
        ushort data = c.Cpl == 0 ? SystemLayout.KernelData : SystemLayout.UserData;
        c.Selectors[1] = code;
        c.Selectors[2] = data;
        // DS, ES, FS, GS: mostly a data segment the set-up can load (a bad one faults in the set-up, which is compared too).
        foreach (int s in (ReadOnlySpan<int>)[3, 0, 4, 5])
        {
            c.Selectors[s] = _r.Chance(25) ? data : _r.Chance(90) ? LoadableDataSelector() : RandomSelector();
            // FS or GS null with RPL 1-3 across the set-up's IRET to CPL 3: Unicorn keeps it (SystemDeviations.NullFsGs);
            // the RETF tests cover that rule, a set-up that starts from it would differ in every later comparison.
            if (c.Cpl == 3 && s is 4 or 5 && (c.Selectors[s] & 0xFFFC) == 0) c.Selectors[s] = 0;
        }

        for (int i = 0; i < 8; i++) c.Gprs[i] = _r.EdgeValue();
        c.Eflags = 2 | (_r.NextUInt32() & 0x8D5) | (_r.Chance(20) ? 0x400u : 0);
        c.Gprs[4] = _data + 0x800 + ((uint)_r.Next(0x200) << 2);  // ESP in the data region (SS flat)
        c.TestEip = _testPage + (uint)_r.Next(0x800);

        var tests = new List<Instruction>();
        BuildTests(tests);
        _b.PlaceTests(tests);
        for (int i = SystemLayout.FirstRandomGdtIndex; i < SystemLayout.GdtEntries; i++)
            if (((i * 8) | 0) is int sel && Used(c, (ushort)sel)) c.Notes.Add($"GDT {sel:x2}: {Descriptors.Describe(c.GdtEntry(i))}");
        for (int i = 0; i < SystemLayout.LdtEntries; i++)
            if (Used(c, (ushort)(i * 8 + 4))) c.Notes.Add($"LDT {i * 8 + 4:x2}: {Descriptors.Describe(c.LdtEntry(i))}");
        c.Notes.Add($"gdt limit {c.GdtLimit:x}, ldt limit {ldtEntries * 8 - 1:x}, data region {_data:x8}, code region {_code:x8}");
        _b.BuildStub();
    }

    /// <summary>
    /// A CALL through a call gate to a nonconforming segment of a lower DPL switches to the stack the TSS names, and
    /// there is no TSS here: Unicorn 2.0.1 aborts the process on it (QEMU's get_ss_esp_from_tss: "invalid tss"). Such
    /// gates get the CPL's flat code segment as their target instead.
    /// </summary>
    private void AvoidInnerRingCallGates()
    {
        ushort flat = _c.Cpl == 0 ? SystemLayout.KernelCode : SystemLayout.UserCode;
        for (int i = 0; i < SystemLayout.GdtEntries + SystemLayout.LdtEntries; i++)
        {
            bool ldt = i >= SystemLayout.GdtEntries;
            int index = ldt ? i - SystemLayout.GdtEntries : i;
            if (!ldt && index < SystemLayout.FirstRandomGdtIndex) continue;
            ulong d = ldt ? _c.LdtEntry(index) : _c.GdtEntry(index);
            if (Descriptors.Decode(d) is not { S: false, Type: 0x4 or 0xC }) continue;
            if (_c.DescriptorOf((ushort)(d >> 16)) is not ulong t || Descriptors.Decode(t) is not { IsCode: true, Conforming: false } target
                || target.Dpl >= _c.Cpl) continue;
            d = (d & ~0xFFFF_0000ul) | ((ulong)flat << 16);
            if (ldt) _b.SetLdt(index, d); else _b.SetGdt(index, d);
        }
    }

    /// <summary>Whether a selector appears in the set-up or the test's inputs (for the reproducer's notes).</summary>
    private static bool Used(SystemCase c, ushort selector)
    {
        selector &= 0xFFFC;
        foreach (ushort s in c.Selectors) if ((s & 0xFFFC) == selector) return true;
        foreach (uint r in c.Gprs) if ((r & 0xFFFC) == selector) return true;
        return false;
    }

    private ushort RandomSelector() => _r.Next(10) switch
    {
        0 => (ushort)_r.Next(4),                                          // null, with any RPL
        1 => (ushort)((_r.Next(0x2000) << 3) | _r.Next(8)),               // anything, mostly beyond the limits
        2 or 3 => (ushort)((_r.Next(6) << 3) | _r.Next(4)),               // the fixed GDT entries
        4 or 5 or 6 => (ushort)(((SystemLayout.FirstRandomGdtIndex + _r.Next(SystemLayout.GdtEntries - SystemLayout.FirstRandomGdtIndex)) << 3) | _r.Next(4)),
        _ => (ushort)((_r.Next(SystemLayout.LdtEntries) << 3) | 4 | _r.Next(4)),
    };

    /// <summary>A selector for a present, readable data or code segment whose DPL allows a load at the case's CPL (or a random one).</summary>
    private ushort LoadableDataSelector()
    {
        for (int attempt = 0; attempt < 60; attempt++)
        {
            ushort s = RandomSelector();
            if (_c.DescriptorOf(s) is not ulong d) continue;
            Descriptors.Decoded x = Descriptors.Decode(d);
            int rpl = s & 3;
            if (x.S && x.Present && x.Readable && (x.Conforming && x.IsCode || (x.Dpl >= _c.Cpl && x.Dpl >= rpl))) return s;
        }
        return RandomSelector();
    }

    private uint RandomBase(bool code) => (code ? _code : _data) + (uint)_r.Next(0x1000);

    private ulong RandomDescriptor()
    {
        int dpl = _r.Next(4);
        bool present = _r.Chance(90);
        int kind = _r.Next(20);
        if (kind < 10 || kind < 15)
        {
            bool code = kind >= 10;
            int type = code ? 8 + _r.Next(8) : _r.Next(8);
            bool expandDown = !code && (type & 4) != 0;
            (uint limit, bool g) = _r.Next(5) switch
            {
                0 => (0xFFFFFu, true),
                1 => ((uint)_r.Next(3), true),                      // 0x0FFF-0x2FFF
                2 => ((uint)_r.Next(0x100), false),
                _ => ((uint)_r.Next(expandDown ? 0x1800 : 0x2400), false),
            };
            return Descriptors.Segment(RandomBase(code), limit, type, true, dpl, present, db: _r.Chance(80), g, avl: _r.Chance(20));
        }
        if (kind < 17)
        {
            // Call gates (32- and 16-bit) to a code segment of the CPL, or to a random selector.
            ushort target = _r.Chance(70) ? (_c.Cpl == 0 ? SystemLayout.KernelCode : SystemLayout.UserCode) : RandomSelector();
            return Descriptors.Gate(target, (uint)_r.Next(0x800) + (target is SystemLayout.KernelCode or SystemLayout.UserCode ? _code : 0),
                _r.Chance(75) ? 0xC : 0x4, dpl, present, _r.Next(3));
        }
        int[] systemTypes = [0x1, 0x2, 0x3, 0x5, 0x9, 0xB, 0xE, 0xF, 0x6, 0x7, 0x0, 0x8, 0xA, 0xD];
        int t = systemTypes[_r.Next(systemTypes.Length)];
        return t is 0x5 or 0x6 or 0x7 or 0xE or 0xF
            ? Descriptors.Gate((ushort)RandomSelector(), _r.NextUInt32(), t, dpl, present)
            : Descriptors.Segment(_r.NextUInt32() & 0x00FF_F000, (uint)_r.Next(0x100) | 0x67, t, false, dpl, present, false, false);
    }

    /// <summary>An offset into a segment for an access of <paramref name="size"/> bytes: in memory the case compares, and often at the limit.</summary>
    private uint ProbeOffset(ushort selector, int size)
    {
        if (_c.DescriptorOf(selector) is not ulong d) return (uint)_r.Next(0x1000);
        Descriptors.Decoded x = Descriptors.Decode(d);
        if (!x.S) return (uint)_r.Next(0x1000);
        uint limit = x.Limit;
        if (x.ExpandDown)
        {
            if (limit >= 0x2000) return limit + 1 + (uint)_r.Next(4) <= 0x2FF0 ? limit + 1 : (uint)_r.Next(0x2000);
            return _r.Next(4) switch { 0 => limit, 1 => limit + 1, 2 => limit + 1 - (uint)_r.Next(size + 1), _ => limit + 1 + (uint)_r.Next(0x800) };
        }
        if (limit >= 0x2FF0) return (uint)_r.Next(0x2FF0);
        return _r.Next(5) switch
        {
            0 => limit + 1 - (uint)size,
            1 => limit + 2 - (uint)size,
            2 => limit + 1,
            3 => 0,
            _ => (uint)_r.Next((int)limit + 1),
        };
    }

    private static int SregIndex(Register s) => s - Register.ES;

    private void BuildTests(List<Instruction> tests)
    {
        SystemCase c = _c;
        switch (_r.Next(9))
        {
            case 0 or 1:
            {
                // MOV Sreg, r16, then an access through it.
                Register s = LoadableSregs[_r.Next(LoadableSregs.Length)];
                ushort selector = s == Register.SS && _r.Chance(50) ? LoadableStackSelector() : _r.Chance(60) ? LoadableDataSelector() : RandomSelector();
                c.Gprs[0] = (c.Gprs[0] & 0xFFFF_0000) | selector;
                tests.Add(Instruction.Create(Code.Mov_Sreg_r32m16, s, Register.EAX));
                Probe(tests, s, selector);
                break;
            }
            case 2:
            {
                // POP Sreg (the selector on the stack), then an access through it.
                Register s = LoadableSregs[_r.Next(LoadableSregs.Length)];
                ushort selector = s == Register.SS ? LoadableStackSelector() : _r.Chance(60) ? LoadableDataSelector() : RandomSelector();
                _b.PokeLinear32(c.Gprs[4], selector | (_r.NextUInt32() & 0xFFFF_0000));
                tests.Add(Instruction.Create(s switch { Register.DS => Code.Popd_DS, Register.ES => Code.Popd_ES, Register.FS => Code.Popd_FS, Register.GS => Code.Popd_GS, _ => Code.Popd_SS }, s));
                Probe(tests, s, selector);
                break;
            }
            case 3:
            {
                // LDS/LES/LFS/LGS/LSS r32, m16:32 (the pointer read through the flat SS), then an access through it.
                Register s = LoadableSregs[_r.Next(LoadableSregs.Length)];
                ushort selector = s == Register.SS ? LoadableStackSelector() : _r.Chance(60) ? LoadableDataSelector() : RandomSelector();
                uint offset = _data + 0x100 + (uint)_r.Next(0xE00);
                c.Gprs[3] = offset;
                _b.PokeLinear32(offset, _data + 0x900 + (uint)_r.Next(0x100));
                _b.PokeLinear(offset + 4, BitConverter.GetBytes(selector));
                var m = new MemoryOperand(Register.EBX, Register.None, 1, 0, 0, false, Register.SS);
                Code code = s switch { Register.DS => Code.Lds_r32_m1632, Register.ES => Code.Les_r32_m1632, Register.FS => Code.Lfs_r32_m1632, Register.GS => Code.Lgs_r32_m1632, _ => Code.Lss_r32_m1632 };
                tests.Add(Instruction.Create(code, s == Register.SS ? Register.ESP : Register.ESI, m));
                Probe(tests, s, selector);
                break;
            }
            case 4 or 5:
            {
                // An access through a preloaded segment, at an offset near its limit.
                Register s = LoadableSregs[_r.Next(4)];
                Probe(tests, s, c.Selectors[SregIndex(s)], first: true);
                break;
            }
            case 6:
            {
                // LAR, LSL, VERR, VERW, ARPL on a random selector; SGDT, SLDT, STR, SMSW.
                ushort selector = _r.Chance(20) ? c.Selectors[_r.Next(6)] : RandomSelector();
                c.Gprs[3] = (c.Gprs[3] & 0xFFFF_0000) | selector;
                uint store = _data + 0x100 + (uint)_r.Next(0xE00);
                var flat = new MemoryOperand(Register.ESI, Register.None, 1, 0, 0, false, Register.SS);
                c.Gprs[6] = store;
                tests.Add(_r.Next(11) switch
                {
                    6 => Instruction.Create(Code.Sgdt_m1632, flat),
                    7 => Instruction.Create(Code.Sldt_rm16, Register.AX),
                    8 => Instruction.Create(Code.Str_rm16, Register.AX),
                    9 => Instruction.Create(Code.Smsw_rm16, Register.DX),
                    10 => Instruction.Create(Code.Sldt_rm16, flat),
                    0 => Instruction.Create(Code.Lar_r32_r32m16, Register.EAX, Register.EBX),
                    1 => Instruction.Create(Code.Lsl_r32_r32m16, Register.EAX, Register.EBX),
                    2 => Instruction.Create(Code.Lar_r16_rm16, Register.AX, Register.BX),
                    3 => Instruction.Create(Code.Verr_rm16, Register.BX),
                    4 => Instruction.Create(Code.Verw_rm16, Register.BX),
                    _ => Instruction.Create(Code.Arpl_rm16_r16, Register.BX, Register.CX),
                });
                break;
            }
            case 7:
            {
                // Far JMP or CALL to a random selector (code segments, call gates, anything else).
                ushort selector = _r.Chance(70) ? CodeOrGateSelector() : RandomSelector();
                // Not a task switch: a TSS or task gate target would switch to a random TSS (not covered here).
                if (_c.DescriptorOf(selector) is ulong t && Descriptors.Decode(t) is { S: false, Type: 1 or 3 or 5 or 9 or 0xB }) selector = SystemLayout.KernelData;
                uint offset = (uint)_r.Next(4) switch { 0 => 0, 1 => (uint)_r.Next(0x800), _ => ProbeOffset(selector, 1) };
                tests.Add(Instruction.CreateBranch(_r.Chance(50) ? Code.Jmp_ptr1632 : Code.Call_ptr1632, selector, offset));
                Note(selector);
                break;
            }
            default:
            {
                // RETF (and RETF imm16) with a random CS:EIP on the stack; at CPL 0 a return to CPL 3 also pops ESP and SS.
                ushort selector = _r.Chance(60) ? CodeOrGateSelector() : RandomSelector();
                if (c.Cpl == 0 && _r.Chance(40)) selector = (ushort)(SystemLayout.UserCode | (_r.Chance(80) ? 3 : _r.Next(4)));
                uint esp = c.Gprs[4];
                _b.PokeLinear32(esp, (uint)_r.Next(0x800) + (selector == SystemLayout.UserCode ? _code : 0));
                _b.PokeLinear32(esp + 4, selector | (_r.NextUInt32() & 0xFFFF_0000));
                int imm = _r.Chance(30) ? 4 * _r.Next(3) : 0;
                _b.PokeLinear32(esp + 8 + (uint)imm, _data + 0x400 + (uint)_r.Next(0x100) * 4);
                _b.PokeLinear32(esp + 12 + (uint)imm, _r.Chance(80) ? SystemLayout.UserData : RandomSelector());
                tests.Add(imm != 0 ? Instruction.Create(Code.Retfd_imm16, imm) : Instruction.Create(Code.Retfd));
                Note(selector);
                break;
            }
        }
    }

    /// <summary>Names the descriptor a test instruction's selector (an immediate, or on the stack) refers to, for the reproducer.</summary>
    private void Note(ushort selector)
    {
        if (_c.DescriptorOf(selector) is ulong d) _c.Notes.Add($"target {selector:x4}: {Descriptors.Describe(d)}");
        else _c.Notes.Add($"target {selector:x4}: null or beyond its table's limit");
        if (Descriptors.Decode(_c.DescriptorOf(selector) ?? 0) is { S: false, Type: 0x4 or 0xC } && _c.DescriptorOf(selector) is ulong g
            && _c.DescriptorOf((ushort)(g >> 16)) is ulong t)
            _c.Notes.Add($"  gate's target {(ushort)(g >> 16):x4}: {Descriptors.Describe(t)}");
    }

    private ushort LoadableStackSelector()
    {
        for (int attempt = 0; attempt < 30; attempt++)
        {
            ushort s = RandomSelector();
            if (_c.DescriptorOf(s) is not ulong d) continue;
            Descriptors.Decoded x = Descriptors.Decode(d);
            if (x.Writable && x.Present && x.Dpl == _c.Cpl && (s & 3) == _c.Cpl) return s;
        }
        return (ushort)(_c.Cpl == 0 ? SystemLayout.KernelData : SystemLayout.UserData);
    }

    private ushort CodeOrGateSelector()
    {
        for (int attempt = 0; attempt < 20; attempt++)
        {
            ushort s = RandomSelector();
            if (_c.DescriptorOf(s) is not ulong d) continue;
            Descriptors.Decoded x = Descriptors.Decode(d);
            if (x.IsCode || (!x.S && x.Type is 0x4 or 0xC)) return s;
        }
        return RandomSelector();
    }

    /// <summary>An access through <paramref name="s"/> (loaded with <paramref name="selector"/>) at an offset near the segment's limit.</summary>
    private void Probe(List<Instruction> tests, Register s, ushort selector, bool first = false)
    {
        SystemCase c = _c;
        if (s == Register.SS)
        {
            // A push or a pop at an ESP near SS's limit (an LSS loaded ESP from memory: leave it).
            bool push = _r.Chance(50);
            if (tests.Count == 0 || tests[0].Code is not Code.Lss_r32_m1632)
                c.Gprs[4] = ProbeOffset(selector, 4) + (push ? 4u : 0);
            tests.Add(push ? Instruction.Create(Code.Push_r32, Register.EDX) : Instruction.Create(Code.Pop_r32, Register.EDX));
            return;
        }
        int size = 1 << _r.Next(3);
        Register b = first ? Register.EBX : Register.EDI;
        uint offset = ProbeOffset(selector, size);
        c.Gprs[b == Register.EBX ? 3 : 7] = offset;
        var m = new MemoryOperand(b, Register.None, 1, 0, 0, false, s == Register.DS ? Register.None : s);
        tests.Add(_r.Next(5) switch
        {
            0 or 1 => size switch
            {
                1 => Instruction.Create(Code.Mov_r8_rm8, Register.CL, m),
                2 => Instruction.Create(Code.Mov_r16_rm16, Register.CX, m),
                _ => Instruction.Create(Code.Mov_r32_rm32, Register.ECX, m),
            },
            2 => size switch
            {
                1 => Instruction.Create(Code.Mov_rm8_r8, m, Register.DL),
                2 => Instruction.Create(Code.Mov_rm16_r16, m, Register.DX),
                _ => Instruction.Create(Code.Mov_rm32_r32, m, Register.EDX),
            },
            3 => Instruction.Create(Code.Add_rm32_r32, m, Register.EDX),
            _ => Instruction.Create(Code.Push_rm32, m),
        });
    }
}
