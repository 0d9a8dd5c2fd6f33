using Iced.Intel;

namespace HybridVmm.Testing;

/// <summary>Guest code written in a test with Iced's <see cref="Assembler"/>, so the test shows the instructions it runs.</summary>
public static class GuestCode
{
    /// <summary>Assembles 32-bit code built by <paramref name="build"/> for <paramref name="address"/>.</summary>
    public static byte[] Assemble(Action<Assembler> build, uint address)
    {
        var asm = new Assembler(32);
        build(asm);
        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), address);
        return stream.ToArray();
    }
}
