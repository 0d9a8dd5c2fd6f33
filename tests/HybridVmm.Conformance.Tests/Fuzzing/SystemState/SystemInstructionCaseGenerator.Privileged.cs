using Iced.Intel;
using static HybridVmm.Conformance.Tests.Fuzzing.SystemState.SystemImageBuilder;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// The system-instruction tests that depend on the privilege level and EFLAGS: CLI, STI, PUSHF and POPF; port I/O;
/// control registers and the cache and TSC instructions; INT n, INT3 and INTO through a random IDT.
/// </summary>
internal sealed partial class SystemInstructionCaseGenerator
{
    /// <summary>CLI, STI, PUSHF and POPF (16- and 32-bit) at each CPL and IOPL, with a PUSHF after to show the flags.</summary>
    private void FlagsAndInterruptFlag(List<Instruction> tests)
    {
        switch (_r.Next(4))
        {
            case 0:
                tests.Add(Instruction.Create(Code.Cli));
                break;
            case 1:
                tests.Add(Instruction.Create(Code.Sti));
                break;
            default:
            {
                // POPF of a random image: IF, IOPL, NT, AC, ID, DF, the status flags, RF and VM. Not TF: the #DB trap it
                // sets up is the lockstep sequences' (CoreMatchesUnicornOnInstructionSequences).
                uint value = (_r.NextUInt32() & 0x0024_7ED5) | (_r.Chance(10) ? 0x3_0000u : 0);
                _b.PokeLinear32(_c.Gprs[4], value);
                tests.Add(Instruction.Create(_r.Chance(30) ? Code.Popfw : Code.Popfd));
                break;
            }
        }
        tests.Add(Instruction.Create(_r.Chance(30) ? Code.Pushfw : Code.Pushfd));
    }

    /// <summary>IN, OUT, INS and OUTS (8, 16, 32 bits; REP with 0-3 elements), where IOPL allows them.</summary>
    private void PortIo(List<Instruction> tests)
    {
        // Unicorn 2.0.1 checks neither IOPL nor the I/O permission bitmap (translate.c, gen_check_io: "Unicorn: allow all
        // I/O instructions"): only accesses the SDM allows by IOPL (CPL <= IOPL) are compared; the bitmap and IOPL
        // faults are PrivilegeTests' (docs/conformance.md).
        if (_c.Cpl > (int)((_c.Eflags >> 12) & 3)) _c.Eflags |= (uint)_c.Cpl << 12;
        uint mapBase = BitConverter.ToUInt16(_c.Image, (int)SystemLayout.TssArea + 0x66);
        // Ports whose bitmap bytes lie around the TSS's limit half the time.
        int port = _r.Chance(50) && _tssLimit > mapBase
            ? (int)Math.Clamp(((long)_tssLimit - mapBase) * 8 - 24 + _r.Next(40), 0, 0xFFFF)
            : _r.Chance(50) ? _r.Next(0x400) : _r.Next(0x10000);
        int form = _r.Next(12);
        if (form < 3 && port > 0xFF) port &= 0xFF;
        SetWord(2, (ushort)port);
        _c.Notes.Add($"port {port:x4}");
        Register acc = _r.Next(3) switch { 0 => Register.AL, 1 => Register.AX, _ => Register.EAX };
        switch (form)
        {
            case 0: tests.Add(Instruction.Create(acc switch { Register.AL => Code.In_AL_imm8, Register.AX => Code.In_AX_imm8, _ => Code.In_EAX_imm8 }, acc, port)); break;
            case 1: tests.Add(Instruction.Create(acc switch { Register.AL => Code.Out_imm8_AL, Register.AX => Code.Out_imm8_AX, _ => Code.Out_imm8_EAX }, port, acc)); break;
            case 2 or 3 or 4: tests.Add(Instruction.Create(acc switch { Register.AL => Code.In_AL_DX, Register.AX => Code.In_AX_DX, _ => Code.In_EAX_DX }, acc, Register.DX)); break;
            case 5 or 6 or 7: tests.Add(Instruction.Create(acc switch { Register.AL => Code.Out_DX_AL, Register.AX => Code.Out_DX_AX, _ => Code.Out_DX_EAX }, Register.DX, acc)); break;
            default:
            {
                bool ins = form < 10;
                int size = _r.Next(3);
                bool rep = _r.Chance(40);
                _c.Gprs[7] = _data + 0x100 + (uint)_r.Next(0xE00);
                _c.Gprs[6] = _data + 0x100 + (uint)_r.Next(0xE00);
                if (rep) _c.Gprs[1] = (uint)_r.Next(4);
                Instruction i = ins
                    ? size switch { 0 => Instruction.CreateInsb(32, rep ? RepPrefixKind.Repe : RepPrefixKind.None), 1 => Instruction.CreateInsw(32, rep ? RepPrefixKind.Repe : RepPrefixKind.None), _ => Instruction.CreateInsd(32, rep ? RepPrefixKind.Repe : RepPrefixKind.None) }
                    : size switch { 0 => Instruction.CreateOutsb(32, Register.None, rep ? RepPrefixKind.Repe : RepPrefixKind.None), 1 => Instruction.CreateOutsw(32, Register.None, rep ? RepPrefixKind.Repe : RepPrefixKind.None), _ => Instruction.CreateOutsd(32, Register.None, rep ? RepPrefixKind.Repe : RepPrefixKind.None) };
                tests.Add(i);
                break;
            }
        }
    }

    /// <summary>MOV to and from CR0, CR2, CR3 and CR4 (#GP at CPL 3), LMSW, CLTS, INVLPG, WBINVD, INVD and RDTSC.</summary>
    private void ControlRegisters(List<Instruction> tests)
    {
        switch (_r.Next(13))
        {
            case 0 or 1 or 2 or 3:
            {
                // MOV CRn, r32: CR0 with PE kept (5 %: PG without PE, 5 %: NW without CD, both #GP(0)), CR4 from the
                // generated bits (5 %: a bit reserved on every processor, 29-31: #GP(0)), CR2 and CR3 anything.
                int cr = _r.Next(4) switch { 0 => 0, 1 => 2, 2 => 3, _ => 4 };
                uint value = cr switch
                {
                    0 => (_r.Chance(5) ? 0x8000_0000u : _r.Chance(5) ? 0x2000_0000u | Cr0Pe : Cr0Pe)
                        | (_r.NextUInt32() & 0x0005_002E) | (_r.Chance(20) ? 0x6000_0000u : 0) | (_r.Chance(50) ? Cr0Et : 0),
                    4 => (_r.NextUInt32() & Cr4Generated) | (_r.Chance(5) ? 1u << (29 + _r.Next(3)) : 0),
                    _ => _r.NextUInt32(),
                };
                if (cr == 0 && (value & 0x6000_0000u) == 0x6000_0000u) value &= _r.Chance(50) ? ~0x2000_0000u : ~0u; // CD alone, or CD and NW
                _c.Gprs[3] = value;
                tests.Add(Instruction.Create(Code.Mov_cr_r32, cr switch { 0 => Register.CR0, 2 => Register.CR2, 3 => Register.CR3, _ => Register.CR4 }, Register.EBX));
                break;
            }
            case 4 or 5:
            {
                Register cr = _r.Next(4) switch { 0 => Register.CR0, 1 => Register.CR2, 2 => Register.CR3, _ => Register.CR4 };
                tests.Add(Instruction.Create(Code.Mov_r32_cr, Register.ESI, cr));
                break;
            }
            case 6:
                tests.Add(Instruction.Create(Code.Clts));
                tests.Add(Instruction.Create(Code.Smsw_rm16, Register.AX));
                break;
            case 7:
                tests.Add(Instruction.Create(Code.Invlpg_m, DataOperand()));
                break;
            case 8:
                tests.Add(Instruction.Create(Code.Wbinvd));
                break;
            case 9:
                tests.Add(Instruction.Create(Code.Invd));
                break;
            case 10:
            {
                // LMSW: CR0 bits 3:0 from the operand, PE set but never cleared (SDM Vol. 2A, LMSW); then SMSW.
                ushort value = (ushort)_r.NextUInt32();
                AddWithWordOperand(tests, Code.Lmsw_rm16, value, memoryChance: 30, gpr: 3);
                tests.Add(Instruction.Create(Code.Smsw_rm16, Register.AX));
                break;
            }
            default:
                tests.Add(Instruction.Create(Code.Rdtsc));
                break;
        }
    }

    /// <summary>
    /// INT n (any vector), INT3 or INTO through an IDT of random gates (SoftwareInterruptModel): interrupt and trap gates
    /// of every DPL, present or not, to flat, random or missing code segments, offsets within and beyond their limits;
    /// 16- and 32-bit; call gates, segment and reserved descriptors. Not task gates (a task switch). The #TS, #NP,
    /// #SS and #GP gates are fixed, and the set-up's TSS is a 32-bit one with a ring-0 stack, so that a delivery fault
    /// is itself delivered and shows in its frame.
    /// </summary>
    private void SoftwareInterrupt(List<Instruction> tests)
    {
        _c.LoadIdt = true;
        _c.IdtBase = SystemLayout.Idt;
        _c.IdtLimit = (ushort)(_r.Chance(80) ? 0x7FF : 0x6F + _r.Next(0x791));
        if (_tssLimit < 0x67) _tssLimit = 0x67 + (uint)_r.Next(0x100);
        _b.SetGdt(SetupTssIndex, Descriptors.Segment(SystemLayout.TssArea, _tssLimit, 0x9, false, _r.Next(4), true, false, false));
        Span<byte> tss = _c.Image.AsSpan((int)SystemLayout.TssArea);
        BitConverter.TryWriteBytes(tss[4..], _data + 0x3000 + ((uint)_r.Next(0x300) << 2)); // ESP0, in the data pages
        BitConverter.TryWriteBytes(tss[8..], (uint)SystemLayout.KernelData);                 // SS0
        BitConverter.TryWriteBytes(tss[12..], _r.Chance(50) ? _data + 0x2000 : _r.EdgeValue()); // ESP1
        BitConverter.TryWriteBytes(tss[16..], (uint)RandomSelector());                       // SS1
        BitConverter.TryWriteBytes(tss[20..], _r.Chance(50) ? _data + 0x2800 : _r.EdgeValue()); // ESP2
        BitConverter.TryWriteBytes(tss[24..], (uint)RandomSelector());                       // SS2
        for (int v = 0; v < 256; v++)
        {
            ulong gate = SoftwareInterruptModel.IsFixedGate(v)
                ? Descriptors.Gate(SystemLayout.KernelCode, SoftwareInterruptModel.ExceptionHandler(v), 0xE, 0, true)
                : RandomIdtEntry();
            BitConverter.TryWriteBytes(_c.Image.AsSpan((int)SystemLayout.Idt + 8 * v), gate);
        }
        int vector = _r.Next(10) switch { 0 or 1 => _r.Next(32), _ => 32 + _r.Next(224) };
        // Unicorn reports INT 6 as an invalid opcode (UC_ERR_INSN_INVALID, EIP on the INT): not comparable.
        if (vector == 6) vector = 7;
        Instruction ins = _r.Next(10) switch
        {
            0 or 1 => Instruction.Create(Code.Int3),
            2 => Instruction.Create(Code.Into),
            _ => Instruction.Create(Code.Int_imm8, vector),
        };
        int n = ins.Code switch { Code.Int3 => 3, Code.Into => 4, _ => vector };
        ulong entry = BitConverter.ToUInt64(_c.Image, (int)SystemLayout.Idt + 8 * n);
        _c.Notes.Add($"idt limit {_c.IdtLimit:x}, gate {n:x2}: {Descriptors.Describe(entry)}");
        Note((ushort)(entry >> 16));
        tests.Add(ins);
    }

    private ulong RandomIdtEntry()
    {
        int dpl = _c.Cpl == 3 && _r.Chance(50) ? 3 : _r.Next(4);
        bool present = _r.Chance(90);
        switch (_r.Next(20))
        {
            case < 16:
            {
                ushort selector = _r.Next(5) switch
                {
                    0 or 1 => SystemLayout.KernelCode,
                    2 => SystemLayout.UserCode,
                    _ => RandomSelector(),
                };
                uint offset = _r.Chance(70) ? SystemLayout.CodeFrame0 + (uint)_r.Next(0x1000) : (uint)_r.Next(0x3000);
                int[] types = [0xE, 0xF, 0xE, 0xF, 0x6, 0x7]; // a third of them 16-bit
                return Descriptors.Gate(selector, offset, types[_r.Next(types.Length)], dpl, present);
            }
            case < 17:
                return Descriptors.Gate(SystemLayout.KernelCode, SystemLayout.CodeFrame0, _r.Chance(50) ? 0xC : 0x4, dpl, present);
            case < 18:
                return RandomSegment();
            default:
            {
                int[] types = [0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xD];
                return Descriptors.Segment(_r.NextUInt32(), (uint)_r.Next(0x100000), types[_r.Next(types.Length)], false, dpl, present, false, false);
            }
        }
    }
}
