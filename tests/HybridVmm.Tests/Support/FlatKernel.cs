using System.Buffers.Binary;
using Iced.Intel;

namespace HybridVmm.Tests.Support;

/// <summary>
/// Wraps code assembled with Iced's Assembler in the smallest Multiboot kernel: a header using the address
/// fields (the a.out kludge, Multiboot 0.6.96 3.1.3) followed by the code, loaded and entered at 1 MiB + 32.
/// </summary>
public static class FlatKernel
{
    public const uint LoadAddress = 0x100000;
    public const uint Entry = LoadAddress + HeaderSize;
    private const int HeaderSize = 32;

    public static byte[] Build(Action<Assembler> program)
    {
        var asm = new Assembler(32);
        program(asm);
        using var code = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(code), Entry);
        return Wrap(code.ToArray());
    }

    public static byte[] Wrap(byte[] code)
    {
        byte[] image = new byte[HeaderSize + code.Length];
        const uint magic = 0x1BADB002, flags = 1u << 16;
        Span<byte> h = image;
        BinaryPrimitives.WriteUInt32LittleEndian(h[0..], magic);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], unchecked(0u - magic - flags));
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], LoadAddress);   // header_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], LoadAddress);   // load_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], 0);             // load_end_addr: whole file
        BinaryPrimitives.WriteUInt32LittleEndian(h[24..], 0);             // bss_end_addr: no BSS
        BinaryPrimitives.WriteUInt32LittleEndian(h[28..], Entry);         // entry_addr
        code.CopyTo(image, HeaderSize);
        return image;
    }
}
