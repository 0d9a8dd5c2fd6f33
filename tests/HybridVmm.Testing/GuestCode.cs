using Iced.Intel;

namespace HybridVmm.Testing;

/// <summary>Guest code written in a test with Iced's <see cref="Assembler"/>, so the test shows the instructions it runs.</summary>
public static class GuestCode
{
    /// <summary>Assembles code built by <paramref name="build"/> for <paramref name="address"/>: 32-bit, or 16-bit for real mode.</summary>
    public static byte[] Assemble(Action<Assembler> build, uint address, int bitness = 32)
    {
        var asm = new Assembler(bitness);
        build(asm);
        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), address);
        return stream.ToArray();
    }
}
