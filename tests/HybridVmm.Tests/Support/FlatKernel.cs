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

    /// <summary>A guest that counts in EAX for ever and never exits: a VM that stays running until it is stopped.</summary>
    public static byte[] Spin() => Build(a =>
    {
        var top = a.CreateLabel();
        a.Label(ref top);
        a.inc(AssemblerRegisters.eax);
        a.jmp(top);
    });
}
