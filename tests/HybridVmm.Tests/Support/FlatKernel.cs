using HybridVmm.Guests.Multiboot;
using HybridVmm.Testing;
using Iced.Intel;

namespace HybridVmm.Tests.Support;

/// <summary>Code assembled with Iced's Assembler, wrapped in the smallest Multiboot kernel (<see cref="FlatMultibootImage"/>).</summary>
public static class FlatKernel
{
    public const uint Entry = FlatMultibootImage.Entry;

    public static byte[] Build(Action<Assembler> program) => Wrap(GuestCode.Assemble(program, Entry));

    public static byte[] Wrap(byte[] code) => FlatMultibootImage.Wrap(code);

    /// <summary>A guest that prints 'b' on COM1 and pulses the keyboard controller's reset line: one byte per boot.</summary>
    public static byte[] PrintThenReset() => Build(a =>
    {
        a.mov(AssemblerRegisters.al, (byte)'b');
        a.mov(AssemblerRegisters.dx, 0x3F8);
        a.@out(AssemblerRegisters.dx, AssemblerRegisters.al);
        a.mov(AssemblerRegisters.al, 0xFE);
        a.@out(0x64, AssemblerRegisters.al);
        a.hlt();
    });

    /// <summary>
    /// A guest that prints 't' on COM1, loads an IDT whose gates are all absent and divides by zero: #DE, then #GP and
    /// #DF find no gate either, and the processor shuts down (a triple fault). One byte per boot.
    /// </summary>
    public static byte[] PrintThenTripleFault() => Build(a =>
    {
        a.mov(AssemblerRegisters.al, (byte)'t');
        a.mov(AssemblerRegisters.dx, 0x3F8);
        a.@out(AssemblerRegisters.dx, AssemblerRegisters.al);
        a.mov(AssemblerRegisters.__dword_ptr[0x8000], 0x07FF0000); // limit 0x7FF at 0x8002, base 0x20000 at 0x8004
        a.mov(AssemblerRegisters.__dword_ptr[0x8004], 0x20000);
        a.lidt(AssemblerRegisters.__[0x8002]);
        a.xor(AssemblerRegisters.ecx, AssemblerRegisters.ecx);
        a.div(AssemblerRegisters.ecx);
        a.hlt();
    });

    /// <summary>A guest that counts in EAX for ever and never exits: a VM that stays running until it is stopped.</summary>
    public static byte[] Spin() => Build(a =>
    {
        var top = a.CreateLabel();
        a.Label(ref top);
        a.inc(AssemblerRegisters.eax);
        a.jmp(top);
    });
}
