using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// INT n, INT3 and INTO through the case's IDT, judged against the SDM rather than against Unicorn. Unicorn 2.0.1 never
/// delivers an interrupt through the IDT: its interrupt hook gets the vector, with EIP on the next instruction
/// (cpu-exec.c, cpu_handle_exception: "point EIP to the next instruction after INT"), before any gate is read. So the
/// harness checks that Unicorn raised vector n there and nothing else changed, and compares the core with its own
/// model of the SDM's INT n pseudocode (Vol. 2A, INT n/INTO/INT3/INT1, "PROTECTED-MODE", "TRAP-OR-INTERRUPT-GATE",
/// "INTER-PRIVILEGE-LEVEL-INTERRUPT", "INTRA-PRIVILEGE-LEVEL-INTERRUPT"; Vol. 3A 6.12.1 and 6.13): the IDT limit, the gate
/// type, the gate DPL against the CPL, present, the handler's code segment, the stack switch through the TSS, the
/// handler offset against the code segment's limit. A delivered interrupt leaves the core in the handler with the
/// frame on the (new) stack; a fault is delivered in turn through the case's fixed #TS/#NP/#SS/#GP gates to a HLT,
/// and the frame there gives the vector, the error code and the faulting EIP.
/// </summary>
internal static class SoftwareInterruptModel
{
    public const string Rule = "INT n/INT3/INTO: Unicorn (QEMU under Unicorn's interrupt hook) reports the vector without delivering it through the IDT; the core's delivery or fault matches the harness's model of the SDM (Vol. 2A INT n, Vol. 3A 6.12, 6.13), frame included";

    /// <summary>The HLT the case's gate for exception vector <paramref name="vector"/> (10-13) enters.</summary>
    public static uint ExceptionHandler(int vector) => SystemLayout.CodeFrame0 + (uint)vector * 16;

    /// <summary>The gates the generator fixes: #TS, #NP, #SS and #GP, each a DPL-0 32-bit interrupt gate to a HLT in the flat ring-0 code.</summary>
    public static bool IsFixedGate(int vector) => vector is >= 10 and <= 13;

    private const uint TF = 0x100, IF = 0x200, NT = 0x4000, RF = 0x1_0000, VM = 0x2_0000;

    /// <summary>The vector a software-interrupt instruction raises, or null (not one, or INTO with OF clear).</summary>
    public static int? Vector(Instruction ins, uint eflags) => ins.Code switch
    {
        Code.Int_imm8 => ins.Immediate8,
        Code.Int3 => 3,
        Code.Into => (eflags & 0x800) != 0 ? 4 : null,
        _ => null,
    };

    /// <param name="Size">The frame's word size: 4 through a 32-bit gate, 2 through a 16-bit one (and the delivery faults' gates are 32-bit).</param>
    private readonly record struct Expected(bool Delivered, int Vector, uint ErrorCode, ushort Cs, uint Eip, ushort Ss, uint Esp, uint ClearFlags, bool OuterFrame, int Size = 4);

    public static string? Check(SystemCase c, Instruction ins, SystemOutcome before, SystemOutcome core, SystemOutcome unicorn, ReadOnlySpan<byte> coreMemory)
    {
        if (Vector(ins, before.Eflags) is not int n || !c.LoadIdt) return null;
        // Unicorn: vector n raised at the INT, EIP on the next instruction, nothing else changed.
        if (unicorn.Kind != OutcomeKind.Exception || unicorn.Vector != n || unicorn.Eip != ins.NextIP32) return null;
        for (int i = 0; i < 8; i++) if (unicorn.Gprs[i] != before.Gprs[i]) return null;
        for (int i = 0; i < 6; i++) if (unicorn.Selectors[i] != before.Selectors[i]) return null;
        if (unicorn.Eflags != before.Eflags) return null;

        Expected e = Model(c, n, before, ins);
        // The registers the delivery does not touch.
        for (int i = 0; i < 8; i++) if (i != 4 && core.Gprs[i] != before.Gprs[i]) return null;
        foreach (int s in (ReadOnlySpan<int>)[0, 3, 4, 5]) if (core.Selectors[s] != before.Selectors[s]) return null;
        for (int i = 0; i < core.Tables.Length; i++) if (core.Tables[i] != before.Tables[i]) return null;
        if (core.Cr0 != before.Cr0 || core.Cr2 != before.Cr2 || core.Cr3 != before.Cr3 || core.Cr4 != before.Cr4) return null;
        // The state after the delivery: the handler (of INT n, or of the exception its delivery raised).
        if (core.Kind != (e.Delivered ? OutcomeKind.Retired : OutcomeKind.Skipped)) return null;
        if (core.Eip != e.Eip || core.Selectors[1] != e.Cs || core.Selectors[2] != e.Ss || core.Gprs[4] != e.Esp) return null;
        if (core.Eflags != (before.Eflags & ~e.ClearFlags)) return null;
        // The frame: [error code,] EIP, CS, EFLAGS[, ESP, SS] from the new ESP up, in words through a 16-bit gate.
        uint at = e.Esp;
        uint mask = e.Size == 4 ? 0xFFFF_FFFF : 0xFFFF;
        if (!e.Delivered && Read(coreMemory, ref at, e.Size) != e.ErrorCode) return null;
        if (Read(coreMemory, ref at, e.Size) != ((e.Delivered ? ins.NextIP32 : ins.IP32) & mask)) return null;
        if ((ushort)Read(coreMemory, ref at, e.Size) != before.Selectors[1]) return null;
        if (Read(coreMemory, ref at, e.Size) != (before.Eflags & mask)) return null;
        if (e.OuterFrame && (Read(coreMemory, ref at, e.Size) != (before.Gprs[4] & mask) || (ushort)Read(coreMemory, ref at, e.Size) != before.Selectors[2])) return null;
        return Rule;
    }

    private static uint Read(ReadOnlySpan<byte> memory, ref uint address, int size)
    {
        uint value = address + (uint)size > memory.Length ? 0xDEAD_BEEF
            : size == 4 ? BitConverter.ToUInt32(memory[(int)address..]) : BitConverter.ToUInt16(memory[(int)address..]);
        address += (uint)size;
        return value;
    }

    /// <summary>What the SDM says INT n does here: delivered (to which handler, with which stack), or the fault its delivery raises.</summary>
    private static Expected Model(SystemCase c, int n, SystemOutcome before, Instruction ins)
    {
        int cpl = c.Cpl;
        uint idtError = ((uint)n << 3) | 2;
        if (n * 8 + 7 > c.IdtLimit) return Fault(c, before, 13, idtError);
        ulong gate = BitConverter.ToUInt64(c.Image, (int)(c.IdtBase + (uint)n * 8));
        uint high = (uint)(gate >> 32);
        int typeAndS = (int)(high >> 8) & 0x1F; // S (bit 4) must be 0
        int gateDpl = (int)(high >> 13) & 3;
        if (typeAndS is not (0xE or 0xF or 0x6 or 0x7)) return Fault(c, before, 13, idtError); // the generator makes no task gates
        if (gateDpl < cpl) return Fault(c, before, 13, idtError);
        if ((high & 0x8000) == 0) return Fault(c, before, 11, idtError);
        var selector = (ushort)(gate >> 16);
        int size = (typeAndS & 8) != 0 ? 4 : 2;
        uint offset = size == 4 ? (uint)(gate & 0xFFFF) | (high & 0xFFFF_0000) : (uint)(gate & 0xFFFF); // a 16-bit gate's offset is 16 bits
        if ((selector & 0xFFFC) == 0) return Fault(c, before, 13, 0);
        if (c.DescriptorOf(selector) is not ulong d) return Fault(c, before, 13, selector & 0xFFFCu);
        Descriptors.Decoded cs = Descriptors.Decode(d);
        if (!cs.IsCode || cs.Dpl > cpl) return Fault(c, before, 13, selector & 0xFFFCu);
        if (!cs.Present) return Fault(c, before, 11, selector & 0xFFFCu);
        uint clear = TF | NT | RF | VM | (typeAndS is 0xE or 0x6 ? IF : 0);
        if (!cs.Conforming && cs.Dpl < cpl)
        {
            // INTER-PRIVILEGE-LEVEL-INTERRUPT: the new stack from the TSS (32-bit; the set-up's, loaded in TR).
            int ring = cs.Dpl;
            ulong trDescriptor = c.GdtEntry(c.Tr >> 3);
            Descriptors.Decoded tr = Descriptors.Decode(trDescriptor);
            uint stackAddress = (uint)ring * 8 + 4;
            if (stackAddress + 5 > tr.Limit) return Fault(c, before, 10, c.Tr & 0xFFFCu);
            uint newEsp = BitConverter.ToUInt32(c.Image, (int)(tr.Base + stackAddress));
            var newSs = BitConverter.ToUInt16(c.Image, (int)(tr.Base + stackAddress + 4));
            if ((newSs & 0xFFFC) == 0) return Fault(c, before, 10, 0);
            if (c.DescriptorOf(newSs) is not ulong sd) return Fault(c, before, 10, newSs & 0xFFFCu);
            Descriptors.Decoded ss = Descriptors.Decode(sd);
            if ((newSs & 3) != ring || ss.Dpl != ring || !ss.Writable) return Fault(c, before, 10, newSs & 0xFFFCu);
            if (!ss.Present) return Fault(c, before, 12, newSs & 0xFFFCu);
            if (!Room(ss, newEsp, 5u * (uint)size)) return Fault(c, before, 12, newSs & 0xFFFCu);
            if (offset > cs.Limit) return Fault(c, before, 13, 0);
            return new Expected(true, n, 0, (ushort)((selector & 0xFFFC) | ring), offset, newSs, newEsp - 5u * (uint)size, clear, OuterFrame: true, size);
        }
        // INTRA-PRIVILEGE-LEVEL-INTERRUPT (conforming, or DPL = CPL): on the current, flat stack.
        if (offset > cs.Limit) return Fault(c, before, 13, 0);
        return new Expected(true, n, 0, (ushort)((selector & 0xFFFC) | cpl), offset, before.Selectors[2], before.Gprs[4] - 3u * (uint)size, clear, OuterFrame: false, size);
    }

    /// <summary>Whether a 32-bit stack segment has room for <paramref name="bytes"/> below ESP (SDM Vol. 3A 5.3: expand-up and expand-down limits).</summary>
    private static bool Room(Descriptors.Decoded ss, uint esp, uint bytes)
    {
        uint upper = ss.Big ? 0xFFFF_FFFF : 0xFFFF;
        ulong low = (ulong)esp - bytes, last = (ulong)esp - 1;
        if (esp < bytes) return false;
        return ss.ExpandDown ? low > ss.Limit && last <= upper : last <= ss.Limit;
    }

    /// <summary>
    /// The delivery faults: the core delivers the fault through the case's fixed gate (DPL 0, flat ring-0 code) and
    /// halts there; from CPL 3 on the TSS's ring-0 stack (SS0 = the flat kernel data segment), with the outer SS:ESP.
    /// </summary>
    private static Expected Fault(SystemCase c, SystemOutcome before, int vector, uint errorCode)
    {
        uint clear = TF | NT | RF | VM | IF;
        if (c.Cpl == 0)
            return new Expected(false, vector, errorCode, SystemLayout.KernelCode, ExceptionHandler(vector) + 1, before.Selectors[2], before.Gprs[4] - 16, clear, OuterFrame: false);
        Descriptors.Decoded tr = Descriptors.Decode(c.GdtEntry(c.Tr >> 3));
        uint esp0 = BitConverter.ToUInt32(c.Image, (int)tr.Base + 4);
        return new Expected(false, vector, errorCode, SystemLayout.KernelCode, ExceptionHandler(vector) + 1, SystemLayout.KernelData, esp0 - 24, clear, OuterFrame: true);
    }
}
