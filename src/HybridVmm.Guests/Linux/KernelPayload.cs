using System.Buffers.Binary;
using System.IO.Compression;
using SharpCompress.Compressors.Xz;

namespace HybridVmm.Guests.Linux;

/// <summary>
/// Unpacks a bzImage's compressed kernel on the host, as its own decompressor (arch/x86/boot/compressed/misc.c) would
/// in the guest. The payload is a compressed vmlinux (followed, on x86-32, by its relocation table) whose last four
/// bytes give the unpacked size, little-endian: the kernel's build appends them for every format, and gzip's own
/// trailer (ISIZE) is the same field. XZ is unpacked with SharpCompress, gzip with .NET's GZipStream; other formats are
/// refused with one line. Memory stays bounded: the unpacked size must fit both the kernel's init_size and the
/// guest's memory before anything is allocated, the output never grows past it, and an XZ stream whose LZMA2
/// dictionary would be larger than <see cref="MaxXzDictionary"/> is refused before the library sees it.
/// </summary>
public static class KernelPayload
{
    /// <summary>The largest LZMA2 dictionary taken. Linux's scripts/xz_wrap.sh uses 32 MiB for x86.</summary>
    public const uint MaxXzDictionary = 64u << 20;

    private static ReadOnlySpan<byte> XzMagic => [0xFD, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00];

    /// <summary>The payload's format by its magic bytes (the formats Linux's Kconfig offers), or null for none known.</summary>
    public static string? Format(ReadOnlySpan<byte> payload) => payload switch
    {
        [0xFD, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00, ..] => "XZ",
        [0x1F, 0x8B, ..] => "gzip",
        [(byte)'B', (byte)'Z', (byte)'h', ..] => "bzip2",
        [0x5D, 0x00, 0x00, ..] => "LZMA",
        [0x89, (byte)'L', (byte)'Z', (byte)'O', ..] => "LZO",
        [0x02, 0x21, 0x4C, 0x18, ..] => "LZ4",
        [0x28, 0xB5, 0x2F, 0xFD, ..] => "zstd",
        _ => null,
    };

    /// <summary>
    /// The unpacked kernel, at most min(init_size, <paramref name="memoryBytes"/>) bytes; or null and a one-line reason
    /// when the header names no payload, its format is not XZ or gzip, or it is corrupt, truncated or too large.
    /// </summary>
    public static byte[]? TryUnpack(BzImage image, ulong memoryBytes, out string error)
    {
        if (image.Protocol < BzImage.PayloadProtocol)
        {
            error = $"Linux boot protocol {image.Protocol >> 8}.{image.Protocol & 0xFF:d2} names no compressed payload (2.08 and later do)";
            return null;
        }

        ReadOnlySpan<byte> payload = image.Payload;
        (uint offset, uint length) = image.PayloadField;
        if (payload.Length < 8)
        {
            error = $"the payload (payload_offset 0x{offset:x}, payload_length {length}) is not inside the {image.ProtectedMode.Length}-byte protected-mode kernel";
            return null;
        }

        string? format = Format(payload);
        if (format is not ("XZ" or "gzip"))
        {
            error = $"the kernel's payload is {format ?? "in an unknown format"}{(format is null ? "" : "-compressed")}; the fast boot unpacks XZ and gzip (boot it with --boot decompressor)";
            return null;
        }

        uint size = BinaryPrimitives.ReadUInt32LittleEndian(payload[^4..]);
        if (size > image.InitSize || size > memoryBytes)
        {
            error = $"the {format} payload says it unpacks to {size} bytes, more than " +
                    (size > image.InitSize ? $"the kernel's init_size ({image.InitSize})" : $"the guest's memory ({memoryBytes} bytes)");
            return null;
        }

        if (format == "XZ")
        {
            (ulong dictionary, string? why) = XzDictionary(payload);
            if (why is not null || dictionary > MaxXzDictionary)
            {
                error = why ?? $"the XZ payload asks for a {dictionary >> 20} MiB dictionary; at most {MaxXzDictionary >> 20} MiB is taken";
                return null;
            }
        }

        byte[] output = new byte[size];
        try
        {
            byte[] input = payload.ToArray();
            using Stream stream = format == "XZ"
                ? new XZStream(new MemoryStream(input, 0, input.Length - 4, writable: false))
                : new GZipStream(new MemoryStream(input, writable: false), CompressionMode.Decompress);
            // One Read for all that is left, on the array overload: SharpCompress 0.50.9's XZStream unpacks to bytes that
            // depend on how the output is cut into reads (its x86 BCJ filter across reads; ReadAtLeast's span reads hit it),
            // which its block check then refuses. Asked for everything at once, it unpacks what liblzma does.
            int read = 0, n;
            while (read < output.Length && (n = stream.Read(output, read, output.Length - read)) > 0)
            {
                read += n;
            }

            if (read < output.Length)
            {
                error = $"the {format} payload is truncated: it unpacks to {read} of the {size} bytes it declares";
                return null;
            }

            if (stream.ReadByte() >= 0)
            {
                error = $"the {format} payload unpacks to more than the {size} bytes it declares";
                return null;
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The decompressors report a corrupt stream with exceptions of many types (InvalidDataException, SharpCompress's
            // own, an index out of range): all of them mean the same thing for this data.
            error = $"the {format} payload is corrupt: {e.Message}";
            return null;
        }

        error = "";
        return output;
    }

    /// <summary>
    /// The LZMA2 dictionary size the first block's header asks for (XZ file format 1.2.0, sections 3.1 and 5.3.1): the
    /// block header follows the 12-byte stream header; its filter flags are a filter ID, a property size and the
    /// properties, and LZMA2's one property byte encodes the size. A kernel's XZ stream has one block.
    /// </summary>
    private static (ulong Dictionary, string? Error) XzDictionary(ReadOnlySpan<byte> payload)
    {
        const int streamHeader = 12;
        if (payload.Length < streamHeader + 8 || !payload.StartsWith(XzMagic))
        {
            return (0, "the XZ payload is truncated: no block header after its stream header");
        }

        int headerSize = (payload[streamHeader] + 1) * 4;
        if (payload[streamHeader] == 0 || streamHeader + headerSize > payload.Length)
        {
            return (0, "the XZ payload is corrupt: its first block header is missing or runs past the payload");
        }

        ReadOnlySpan<byte> header = payload.Slice(streamHeader, headerSize);
        int filters = (header[1] & 0x03) + 1, at = 2;
        at += (header[1] & 0x40) != 0 ? VarIntLength(header[at..]) : 0; // compressed size
        at += (header[1] & 0x80) != 0 ? VarIntLength(header[at..]) : 0; // uncompressed size
        for (int i = 0; i < filters && at + 2 <= header.Length; i++)
        {
            byte id = header[at], propertySize = header[at + 1];
            at += 2;
            if (id == 0x21 && propertySize == 1 && at < header.Length)
            {
                int bits = header[at] & 0x3F;
                return bits > 40 ? (0, "the XZ payload is corrupt: its LZMA2 dictionary size is out of range")
                    : (((ulong)(2 | (bits & 1))) << (bits / 2 + 11), null);
            }

            at += propertySize;
        }

        return (0, "the XZ payload's first block has no LZMA2 filter");
    }

    private static int VarIntLength(ReadOnlySpan<byte> bytes)
    {
        int n = 0;
        while (n < bytes.Length && n < 9 && (bytes[n++] & 0x80) != 0)
        {
        }

        return n;
    }
}
