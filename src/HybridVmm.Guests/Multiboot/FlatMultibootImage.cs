using System.Buffers.Binary;

namespace HybridVmm.Guests.Multiboot;

/// <summary>
/// The smallest Multiboot kernel: a header using the address fields (the a.out kludge, Multiboot 0.6.96
/// 3.1.3) followed by flat code, loaded at 1 MiB and entered at <see cref="Entry"/>. Tests and scenario
/// programs wrap code assembled with Iced's Assembler in it.
/// </summary>
public static class FlatMultibootImage
{
    public const uint LoadAddress = 0x100000;
    public const int HeaderSize = 32;
    public const uint Entry = LoadAddress + HeaderSize;

    public static byte[] Wrap(ReadOnlySpan<byte> code)
    {
        byte[] image = new byte[HeaderSize + code.Length];
        const uint flags = MultibootHeader.AddressFieldsFlag;
        Span<byte> h = image;
        BinaryPrimitives.WriteUInt32LittleEndian(h[0..], MultibootHeader.Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], unchecked(0u - MultibootHeader.Magic - flags));
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], LoadAddress);   // header_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], LoadAddress);   // load_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], 0);             // load_end_addr: the whole file
        BinaryPrimitives.WriteUInt32LittleEndian(h[24..], 0);             // bss_end_addr: no BSS
        BinaryPrimitives.WriteUInt32LittleEndian(h[28..], Entry);         // entry_addr
        code.CopyTo(image.AsSpan(HeaderSize));
        return image;
    }
}
