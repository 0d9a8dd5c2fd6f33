using System.Buffers.Binary;

namespace HybridVmm.Guests.Multiboot;

/// <summary>
/// The Multiboot v1 header (Multiboot Specification 0.6.96, 3.1): a magic, flags and checksum, 4-byte
/// aligned within the first 8192 bytes of the image, optionally followed by the a.out-kludge address fields.
/// </summary>
public readonly record struct MultibootHeader(
    int FileOffset,
    uint Flags,
    uint HeaderAddress,
    uint LoadAddress,
    uint LoadEndAddress,
    uint BssEndAddress,
    uint EntryAddress)
{
    public const uint Magic = 0x1BADB002;
    public const int SearchLimit = 8192;

    /// <summary>Bit 16: the address fields are valid and take precedence over the executable format.</summary>
    public const uint AddressFieldsFlag = 1u << 16;

    /// <summary>Bits 0-15 are requirements the loader must understand; we honour 0 (page-align modules, none
    /// are loaded), 1 (memory information, always given) and 2 (video mode: a request only, none offered).</summary>
    public const uint UnderstoodRequirementBits = 0b111;

    public bool HasAddressFields => (Flags & AddressFieldsFlag) != 0;

    public static MultibootHeader? TryFind(ReadOnlySpan<byte> file, out string error)
    {
        int limit = Math.Min(file.Length, SearchLimit) - 12;
        for (int offset = 0; offset <= limit; offset += 4)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(file[offset..]) != Magic)
            {
                continue;
            }

            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(file[(offset + 4)..]);
            uint checksum = BinaryPrimitives.ReadUInt32LittleEndian(file[(offset + 8)..]);
            if (unchecked(Magic + flags + checksum) != 0)
            {
                error = $"Multiboot header at offset {offset} has a bad checksum (magic + flags + checksum must be 0)";
                return null;
            }

            uint unknown = flags & 0xFFFF & ~UnderstoodRequirementBits;
            if (unknown != 0)
            {
                error = $"Multiboot header requires features this loader does not provide (flags 0x{unknown:x4})";
                return null;
            }

            if ((flags & AddressFieldsFlag) != 0)
            {
                if (offset + 32 > file.Length)
                {
                    error = "Multiboot header sets the address-fields flag but the fields are truncated";
                    return null;
                }

                error = "";
                return new MultibootHeader(offset, flags,
                    BinaryPrimitives.ReadUInt32LittleEndian(file[(offset + 12)..]),
                    BinaryPrimitives.ReadUInt32LittleEndian(file[(offset + 16)..]),
                    BinaryPrimitives.ReadUInt32LittleEndian(file[(offset + 20)..]),
                    BinaryPrimitives.ReadUInt32LittleEndian(file[(offset + 24)..]),
                    BinaryPrimitives.ReadUInt32LittleEndian(file[(offset + 28)..]));
            }

            error = "";
            return new MultibootHeader(offset, flags, 0, 0, 0, 0, 0);
        }

        error = $"no Multiboot header (magic 0x{Magic:X8}) in the first {SearchLimit} bytes: not a Multiboot v1 kernel";
        return null;
    }
}
