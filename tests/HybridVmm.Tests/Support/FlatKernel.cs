using HybridVmm.Guests.Multiboot;
using Iced.Intel;

namespace HybridVmm.Tests.Support;

/// <summary>Code assembled with Iced's Assembler, wrapped in the smallest Multiboot kernel (<see cref="FlatMultibootImage"/>).</summary>
public static class FlatKernel
{
    public const uint Entry = FlatMultibootImage.Entry;

    public static byte[] Build(Action<Assembler> program)
    {
        var asm = new Assembler(32);
        program(asm);
        using var code = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(code), Entry);
        return Wrap(code.ToArray());
    }

    public static byte[] Wrap(byte[] code) => FlatMultibootImage.Wrap(code);
}
