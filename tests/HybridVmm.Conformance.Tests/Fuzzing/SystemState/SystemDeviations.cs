using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// Where Unicorn 2.0.1 departs from the SDM on system state and the core follows the SDM. Each rule is narrow: the
/// harness decides from its own model of the case (the descriptor tables it generated, the registers before the
/// instruction), not from the core, that the SDM requires what the core did.
/// </summary>
internal static class SystemDeviations
{
    public const string SegmentLimits = "data access outside a segment's limit, through a read-only or null segment: Unicorn (QEMU TCG) performs it, the SDM (Vol. 3A 5.3, 5.4.1; Vol. 2 \"Protected Mode Exceptions\") raises #GP(0) or #SS(0)";

    private static readonly InstructionInfoFactory InfoFactory = new();

    public const string AccessedBitWriteWidth = "a segment load that sets a descriptor's accessed bit faults on a read-only GDT page: Unicorn (QEMU) writes the descriptor's high dword and reports CR2 = descriptor + 4, the core writes the type byte and reports descriptor + 5 (as Bochs does); the SDM does not give the width of that write";

    /// <summary>The paging cases' one rule: where the SDM leaves the width of the accessed-bit write open.</summary>
    public static string? Paging(SystemCase c, Instruction ins, SystemOutcome before, SystemOutcome core, SystemOutcome unicorn)
    {
        if (ins.Code != Code.Mov_Sreg_r32m16 || ins.Op1Register != Register.EAX) return null;
        var selector = (ushort)before.Gprs[0];
        if ((selector & 4) != 0 || c.DescriptorOf(selector) is null) return null;
        uint descriptor = SystemLayout.Gdt + (uint)(selector & ~7);
        if (core.Kind != OutcomeKind.Exception || unicorn.Kind != OutcomeKind.Exception || core.Vector != 14 || unicorn.Vector != 14
            || core.ErrorCode != unicorn.ErrorCode || core.Cr2 != descriptor + 5 || unicorn.Cr2 != descriptor + 4) return null;
        for (int i = 0; i < 8; i++) if (core.Gprs[i] != unicorn.Gprs[i]) return null;
        for (int i = 0; i < 6; i++) if (core.Selectors[i] != unicorn.Selectors[i]) return null;
        return core.Eip == unicorn.Eip && core.Eflags == unicorn.Eflags ? AccessedBitWriteWidth : null;
    }

    public const string NullFsGs = "RETF/IRET to an outer ring with a null selector of RPL 1-3 in FS or GS: Unicorn (QEMU's validate_seg) keeps it, the SDM (Vol. 2B IRET, RET: \"IF (SegmentSelector == NULL) ... THEN SegmentSelector := 0\") makes it 0";

    public const string AccessedBit = "far JMP/CALL/RETF: Unicorn (QEMU's helper_ljmp/lcall/ret_protected) loads CS and SS without setting the descriptor's accessed bit, the SDM (Vol. 3A 3.4.5.1) sets it";

    public const string CallLimitErrorCode = "far CALL to an EIP beyond the code segment's limit: Unicorn (QEMU's helper_lcall_protected) raises #GP(selector), the SDM (Vol. 2A CALL: \"IF tempEIP outside new code segment limit THEN #GP(0)\") #GP(0)";

    /// <summary>A far JMP, CALL or RET (what loads CS from a descriptor without a gate's help in these cases).</summary>
    public static bool LoadsCsWithoutAccessedBit(Mnemonic mnemonic, Code code) => mnemonic is Mnemonic.Retf || code is Code.Jmp_ptr1632 or Code.Call_ptr1632;

    /// <summary>The physical address of byte 5 (type, with the accessed bit) of a selector's descriptor in the case's tables, or -1.</summary>
    public static int AccessedByte(SystemCase c, ushort selector)
    {
        if (c.DescriptorOf(selector) is null) return -1;
        return (int)(((selector & 4) != 0 ? SystemLayout.Ldt : SystemLayout.Gdt) + (uint)(selector & ~7) + 5);
    }

    public const string Gate16Offset = "far JMP/CALL through a 16-bit call gate: Unicorn (QEMU) takes offset bits 31:16 from the gate's upper word, the SDM's 16-bit gate (Vol. 3A 5.8.3; CALL: \"CS:IP := CallGate(CS:IP)\") has a 16-bit offset";

    public const string RetfLimit = "RETF to an EIP beyond the return code segment's limit: Unicorn (QEMU's helper_ret_protected) returns, the SDM (Vol. 2B RET: \"IF the return instruction pointer is not within the return code segment limit THEN #GP(0)\") faults";

    public const string GateTargetNotPresent = "far JMP through a call gate to a not-present code segment: Unicorn (QEMU's helper_ljmp_protected) raises #GP(selector), the SDM (Vol. 2A JMP: \"IF code segment is not present THEN #NP(code-segment selector)\") #NP(selector)";

    public static string? Segmentation(SystemCase c, Instruction ins, SystemOutcome before, SystemOutcome core, SystemOutcome unicorn)
    {
        if (ins.Code == Code.Jmp_ptr1632 && core.Kind == OutcomeKind.Exception && unicorn.Kind == OutcomeKind.Exception
            && core.Vector == 11 && unicorn.Vector == 13 && core.ErrorCode == unicorn.ErrorCode
            && c.DescriptorOf(ins.FarBranchSelector) is ulong callGate && Descriptors.Decode(callGate) is { S: false, Type: 0x4 or 0xC }
            && (ushort)(callGate >> 16) is var gateCs && core.ErrorCode == (uint)(gateCs & 0xFFFC)
            && c.DescriptorOf(gateCs) is ulong code && Descriptors.Decode(code) is { IsCode: true, Present: false })
            return GateTargetNotPresent;
        if (ins.Code is Code.Call_ptr1632 or Code.Jmp_ptr1632 && core.Kind == OutcomeKind.Retired && unicorn.Kind == OutcomeKind.Retired
            && c.DescriptorOf(ins.FarBranchSelector) is ulong gate && Descriptors.Decode(gate) is { S: false, Type: 4 }
            && (uint)((gate & 0xFFFF) | ((gate >> 32) & 0xFFFF_0000)) is uint full && full > 0xFFFF
            && core.Eip == (full & 0xFFFF) && unicorn.Eip == full && SameExceptEip(core, unicorn))
            return Gate16Offset;
        if (ins.Mnemonic == Mnemonic.Retf && core.Kind == OutcomeKind.Exception && core.Vector == 13 && core.ErrorCode == 0
            && unicorn.Kind == OutcomeKind.Retired && c.DescriptorOf(unicorn.Selectors[1]) is ulong rcs
            && Descriptors.Decode(rcs) is { IsCode: true } target && unicorn.Eip > target.Limit)
            return RetfLimit;
        if (ins.Code == Code.Call_ptr1632 && core.Kind == OutcomeKind.Exception && unicorn.Kind == OutcomeKind.Exception
            && core.Vector == 13 && unicorn.Vector == 13 && core.ErrorCode == 0 && unicorn.ErrorCode == (uint)(ins.FarBranchSelector & 0xFFFC)
            && c.DescriptorOf(ins.FarBranchSelector) is ulong d && Descriptors.Decode(d) is { IsCode: true, Present: true } x && ins.FarBranch32 > x.Limit)
            return CallLimitErrorCode;
        if (ins.Mnemonic is Mnemonic.Retf or Mnemonic.Iret && core.Kind == OutcomeKind.Retired && unicorn.Kind == OutcomeKind.Retired
            && core.Selectors[1] == unicorn.Selectors[1] && (core.Selectors[1] & 3) > (before.Selectors[1] & 3)
            && OnlyNullFsGsDiffer(core, unicorn))
            return NullFsGs;
        return SegmentChecks(c, ins, before, core, unicorn);
    }

    private static bool SameExceptEip(SystemOutcome core, SystemOutcome unicorn)
    {
        for (int i = 0; i < 8; i++) if (core.Gprs[i] != unicorn.Gprs[i]) return false;
        for (int i = 0; i < 6; i++) if (core.Selectors[i] != unicorn.Selectors[i]) return false;
        return core.Eflags == unicorn.Eflags;
    }

    private static bool OnlyNullFsGsDiffer(SystemOutcome core, SystemOutcome unicorn)
    {
        bool any = false;
        for (int i = 0; i < 6; i++)
        {
            if (core.Selectors[i] == unicorn.Selectors[i]) continue;
            if (i is not (4 or 5) || core.Selectors[i] != 0 || unicorn.Selectors[i] is not (1 or 2 or 3)) return false;
            any = true;
        }
        if (!any || core.Eip != unicorn.Eip || core.Eflags != unicorn.Eflags) return false;
        for (int i = 0; i < 8; i++) if (core.Gprs[i] != unicorn.Gprs[i]) return false;
        return true;
    }

    private static string? SegmentChecks(SystemCase c, Instruction ins, SystemOutcome before, SystemOutcome core, SystemOutcome unicorn)
    {
        if (unicorn.Kind != OutcomeKind.Retired || core.Kind != OutcomeKind.Exception || core.ErrorCode != 0) return null;
        if (core.Vector is not (12 or 13)) return null;
        InstructionInfo info = InfoFactory.GetInfo(ins);
        foreach (UsedMemory m in info.GetUsedMemory())
        {
            if (m.Access == OpAccess.NoMemAccess) continue;
            Register segment = m.Segment;
            if (segment is < Register.ES or > Register.GS) continue;
            uint offset = (uint)m.GetVirtualAddress(0, (register, _, _) => register is >= Register.ES and <= Register.GS ? 0 : Value(before, register));
            int size = m.MemorySize.GetSize();
            bool write = m.Access is OpAccess.Write or OpAccess.ReadWrite or OpAccess.CondWrite or OpAccess.ReadCondWrite;
            bool read = m.Access is OpAccess.Read or OpAccess.ReadWrite or OpAccess.CondRead or OpAccess.ReadCondWrite;
            if (!Violates(c, before.Selectors[segment - Register.ES], offset, size, write, read)) continue;
            // The first access that breaks a segment rule decides the vector: #SS(0) through SS, #GP(0) otherwise.
            return core.Vector == (segment == Register.SS ? 12 : 13) ? SegmentLimits : null;
        }
        return null;
    }

    private static ulong Value(SystemOutcome o, Register register) => register switch
    {
        >= Register.EAX and <= Register.EDI => o.Gprs[register - Register.EAX],
        >= Register.AX and <= Register.DI => o.Gprs[register - Register.AX] & 0xFFFF,
        _ => 0,
    };

    /// <summary>The SDM's checks of one data access through a segment whose selector is <paramref name="selector"/> (SDM Vol. 3A, 5.3 and 5.4.1).</summary>
    private static bool Violates(SystemCase c, ushort selector, uint offset, int size, bool write, bool read)
    {
        if (c.DescriptorOf(selector) is not ulong d) return true; // a null selector's segment is unusable
        Descriptors.Decoded x = Descriptors.Decode(d);
        if (!x.S || !x.Present) return true;
        if (write && !x.Writable) return true;
        if (read && !x.Readable) return true;
        ulong last = (ulong)offset + (ulong)size - 1;
        if (x.ExpandDown) return !(offset > x.Limit && last <= (x.Big ? 0xFFFF_FFFFul : 0xFFFFul));
        return last > x.Limit;
    }

    public const string TableStoreO16 = "SGDT/SIDT with a 16-bit operand size: Unicorn (QEMU's translate.c) stores a 24-bit base and a zero sixth byte, as the Pentium did; the SDM (Vol. 2B SGDT, SIDT: \"IF OperandSize = 16 or OperandSize = 32 ... DEST[16:47] := GDTR(Base); (* Full 32-bit base address stored *)\") stores all 32 bits";

    /// <summary>
    /// For a case whose one test is a 16-bit SGDT or SIDT to [ESI]: the address of the stored base's high byte and the
    /// byte the SDM stores there (the register's base bits 31:24, from the case's set-up: GDTR is the case's table, IDTR the base the set-up loaded).
    /// </summary>
    public static (int Address, byte Value)? TableStoreHighByte(SystemCase c, SystemOutcome core)
    {
        if (c.Tests.Count != 1 || c.Tests[0].Code is not (Code.Sgdt_m1632_16 or Code.Sidt_m1632_16) || c.Tests[0].MemoryBase != Register.ESI) return null;
        uint baseAddress = c.Tests[0].Code == Code.Sgdt_m1632_16 ? SystemLayout.Gdt : c.IdtBase;
        long address = (long)c.Gprs[6] + 5;
        return address < SystemLayout.MemorySize ? ((int)address, (byte)(baseAddress >> 24)) : null;
    }

    public const string MovCr0Invalid = "MOV CR0 with PG set and PE clear, or NW set and CD clear: Unicorn (QEMU 5's cpu_x86_update_cr0) loads it, the SDM (Vol. 2B MOV—Move to/from Control Registers: \"#GP(0) If an attempt is made to write invalid bit combinations in CR0 (such as setting the PG flag to 1 when the PE flag is set to 0, or setting the CD flag to 0 when the NW flag is set to 1)\") raises #GP(0)";

    public const string MovCr4Reserved = "MOV CR4 with a reserved bit (31:29) set: Unicorn (QEMU 5's cpu_x86_update_cr4) loads it, the SDM (Vol. 2B MOV CR: \"#GP(0) If an attempt is made to write a 1 to any reserved bit in CR4\"; Vol. 3A 2.5) raises #GP(0)";

    public const string LtrNull = "LTR with a null selector: Unicorn (QEMU's helper_ltr) loads a null TR, the SDM (Vol. 2A LTR: \"IF SRC is a NULL selector THEN #GP(0)\") raises #GP(0)";

    /// <summary>
    /// The system-instruction cases' rules. Each applies only where the harness's own model of the case (the operand
    /// the generator chose, the CPL) says the SDM requires #GP(0), the core raised exactly that and left no trace, and
    /// Unicorn executed the instruction.
    /// </summary>
    public static string? SystemInstructions(SystemCase c, Instruction ins, SystemOutcome before, SystemOutcome core, SystemOutcome unicorn)
    {
        if (c.Cpl != 0 || unicorn.Kind != OutcomeKind.Retired || core.Kind != OutcomeKind.Exception || core.Vector != 13 || core.ErrorCode != 0
            || !Unchanged(before, core)) return null;
        if (ins.Code == Code.Mov_cr_r32 && ins.Op1Register is >= Register.EAX and <= Register.EDI)
        {
            uint value = before.Gprs[ins.Op1Register - Register.EAX];
            if (ins.Op0Register == Register.CR0 && ((value & 0x8000_0001) == 0x8000_0000 || (value & 0x6000_0000) == 0x2000_0000)) return MovCr0Invalid;
            if (ins.Op0Register == Register.CR4 && (value & 0xE000_0000) != 0) return MovCr4Reserved;
        }
        if (ins.Code == Code.Ltr_rm16 && SelectorOperand(c, ins, before) is ushort selector && (selector & 0xFFFC) == 0) return LtrNull;
        return null;
    }

    /// <summary>A faulting instruction left no trace: registers, EIP, flags, selectors, control and table registers as before it.</summary>
    private static bool Unchanged(SystemOutcome before, SystemOutcome after)
    {
        for (int i = 0; i < 8; i++) if (before.Gprs[i] != after.Gprs[i]) return false;
        for (int i = 0; i < 6; i++) if (before.Selectors[i] != after.Selectors[i]) return false;
        for (int i = 0; i < before.Tables.Length; i++) if (before.Tables[i] != after.Tables[i]) return false;
        return before.Eip == after.Eip && before.Eflags == after.Eflags && before.Cr0 == after.Cr0 && before.Cr3 == after.Cr3 && before.Cr4 == after.Cr4;
    }

    /// <summary>The 16-bit operand of LLDT, LTR and the like: a register's low word, or the word the generator placed at [ESI] in a case page.</summary>
    public static ushort? SelectorOperand(SystemCase c, Instruction ins, SystemOutcome before)
    {
        if (ins.Op0Kind == OpKind.Register) return (ushort)before.Gprs[(ins.Op0Register.GetFullRegister32() - Register.EAX)];
        if (ins.MemoryBase != Register.ESI || ins.MemoryDisplacement32 != 0) return null;
        uint linear = before.Gprs[6];
        int slot = c.Pages.IndexOf(linear & ~0xFFFu);
        if (slot < 0 || (linear & 0xFFF) > 0xFFE) return null;
        return BitConverter.ToUInt16(c.PageSlot(slot)[(int)(linear & 0xFFF)..]);
    }
}
