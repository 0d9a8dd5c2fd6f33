using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// What the PAE test guests (<see cref="PaePagingTests"/>, <see cref="RamAbove4GiBTests"/>) share: 64-bit paging entries
/// written by the guest, an interrupt gate for #PF, and COM1 output of hexadecimal numbers.
/// </summary>
internal static class PaeGuestParts
{
    /// <summary>Writes the 64-bit paging entry <paramref name="high"/>:<paramref name="low"/> at <paramref name="address"/>.</summary>
    public static void Entry(Assembler a, uint address, uint low, uint high)
    {
        a.mov(__dword_ptr[address], low);
        a.mov(__dword_ptr[address + 4], high);
    }

    /// <summary>
    /// Points vector 14 (#PF) of a 256-entry IDT at <paramref name="idt"/> to <paramref name="handler"/> through an
    /// interrupt gate of the running code segment, and loads IDTR from the six bytes below the IDT. The guest does not
    /// know where it was loaded, so a CALL finds the gate's target: a jump to the handler eight bytes past the CALL.
    /// </summary>
    public static void InstallPageFaultGate(Assembler a, uint idt, Label handler)
    {
        Label afterGate = a.CreateLabel(), setGate = a.CreateLabel();
        a.call(afterGate); // pushes its own return address: where the code runs
        a.Label(ref afterGate);
        a.pop(eax);        // 58
        a.add(eax, 8);     // 05 imm32: the jump below is eight bytes past afterGate
        a.jmp(setGate);    // EB 05
        a.jmp(handler);    // the gate's target
        a.Label(ref setGate);
        a.mov(__word_ptr[idt + (14 * 8)], ax);
        a.shr(eax, 16);
        a.mov(__word_ptr[idt + (14 * 8) + 6], ax);
        a.mov(ax, cs);
        a.mov(__word_ptr[idt + (14 * 8) + 2], ax);
        a.mov(__word_ptr[idt + (14 * 8) + 4], 0x8E00);
        a.mov(__word_ptr[idt - 6], 0x7FF);
        a.mov(__dword_ptr[idt - 4], idt);
        a.lidt(__[idt - 6]);
    }

    /// <summary>
    /// The output routines at <paramref name="hex8"/> (EAX as eight hex digits and a space) and <paramref name="nibble"/>
    /// (the low nibble of AL as a hex digit), both through COM1 and keeping EAX; ECX, EBX and EDX are not kept.
    /// </summary>
    public static void HexRoutines(Assembler a, ref Label hex8, ref Label nibble)
    {
        Label digit = a.CreateLabel(), loop8 = a.CreateLabel();
        a.Label(ref hex8);
        a.mov(ecx, 8);
        a.Label(ref loop8);
        a.rol(eax, 4); a.call(nibble); a.loop(loop8);
        Space(a);
        a.ret();
        a.Label(ref nibble);
        a.mov(ebx, eax); a.and(al, 15); a.add(al, (byte)'0'); a.cmp(al, (byte)'9'); a.jbe(digit); a.add(al, 7);
        a.Label(ref digit);
        a.mov(dx, 0x3F8); a.@out(dx, al); a.mov(eax, ebx);
        a.ret();
    }

    /// <summary>A space through COM1, EAX kept.</summary>
    public static void Space(Assembler a)
    {
        a.mov(ebx, eax); a.mov(al, (byte)' '); a.mov(dx, 0x3F8); a.@out(dx, al); a.mov(eax, ebx);
    }
}
