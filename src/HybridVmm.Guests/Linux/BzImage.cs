using System.Buffers.Binary;

namespace HybridVmm.Guests.Linux;

/// <summary>
/// A Linux/x86 bzImage as the Linux boot protocol describes it (Documentation/arch/x86/boot.rst): a boot sector and
/// real-mode setup code carrying the setup header at 0x1F1, then the protected-mode kernel. HybridVmm boots it with
/// the 32-bit boot protocol, so only the header and the protected-mode part are used; the real-mode setup code never
/// runs. Parsing never throws for bad input: it returns null and a one-line reason.
/// </summary>
public sealed class BzImage
{
    /// <summary>The setup header's offset in the file and in the zero page (struct boot_params.hdr).</summary>
    public const int SetupHeaderOffset = 0x1F1;

    /// <summary>Where struct boot_params.hdr may end: the zero page's next field starts at 0x290.</summary>
    public const int SetupHeaderLimit = 0x290;

    /// <summary>The oldest protocol taken: 2.06 has every field the 32-bit boot needs (cmdline_size among them).</summary>
    public const ushort MinimumProtocol = 0x0206;

    /// <summary>loadflags bit 0: the protected-mode code is loaded at 0x100000 (a bzImage, not a zImage).</summary>
    public const byte LoadedHigh = 0x01;

    private readonly byte[] _file;

    private BzImage(byte[] file) => _file = file;

    public ushort Protocol => U16(0x206);

    /// <summary>The number of 512-byte setup sectors after the boot sector (0 means 4, as the protocol says).</summary>
    public int SetupSectors => _file[SetupHeaderOffset] == 0 ? 4 : _file[SetupHeaderOffset];

    /// <summary>The protected-mode kernel's offset in the file.</summary>
    public int ProtectedModeOffset => (SetupSectors + 1) * 512;

    public ReadOnlySpan<byte> ProtectedMode => _file.AsSpan(ProtectedModeOffset);

    /// <summary>The setup header as the file carries it, from 0x1F1 to the end the jump at 0x200 gives.</summary>
    public ReadOnlySpan<byte> SetupHeader => _file.AsSpan(SetupHeaderOffset, HeaderEnd - SetupHeaderOffset);

    private int HeaderEnd => Math.Min(0x202 + _file[0x201], SetupHeaderLimit);

    public byte LoadFlags => _file[0x211];

    /// <summary>The 32-bit entry point (the protected-mode kernel's load address, normally 0x100000).</summary>
    public uint Code32Start => U32(0x214);

    /// <summary>The highest address the initrd may occupy.</summary>
    public uint InitrdAddressMax => U32(0x22C);

    public uint KernelAlignment => U32(0x230);

    public bool Relocatable => _file[0x234] != 0;

    /// <summary>The longest command line the kernel takes, without its terminating NUL.</summary>
    public uint CommandLineSize => U32(0x238);

    /// <summary>Where the kernel prefers to run (it decompresses itself there when relocatable and loaded lower).</summary>
    public ulong PreferredAddress => BinaryPrimitives.ReadUInt64LittleEndian(_file.AsSpan(0x258));

    /// <summary>The linear memory the kernel needs from where it runs, decompressor and decompressed kernel together.</summary>
    public uint InitSize => U32(0x260);

    /// <summary>The oldest protocol whose header names the compressed payload (payload_offset, payload_length).</summary>
    public const ushort PayloadProtocol = 0x0208;

    /// <summary>
    /// The compressed kernel (a compressed vmlinux, followed on x86-32 by its relocations) inside the protected-mode
    /// code: payload_offset and payload_length, protocol 2.08 and later. Empty when the header names none or names bytes
    /// the file does not hold; <see cref="KernelPayload"/> says which.
    /// </summary>
    public ReadOnlySpan<byte> Payload =>
        Protocol >= PayloadProtocol && (ulong)U32(0x248) + U32(0x24C) <= (ulong)ProtectedMode.Length
            ? ProtectedMode.Slice((int)U32(0x248), (int)U32(0x24C))
            : default;

    /// <summary>payload_offset and payload_length as the header gives them, for messages.</summary>
    public (uint Offset, uint Length) PayloadField => (U32(0x248), U32(0x24C));

    /// <summary>Whether <paramref name="file"/> carries the boot sector signature and a Linux setup header ("HdrS").</summary>
    public static bool HasLinuxHeader(ReadOnlySpan<byte> file) =>
        file.Length >= 0x264 && file[0x1FE] == 0x55 && file[0x1FF] == 0xAA
        && BinaryPrimitives.ReadUInt32LittleEndian(file[0x202..]) == 0x53726448; // "HdrS"

    public static BzImage? TryParse(byte[] file, out string error)
    {
        if (!HasLinuxHeader(file))
        {
            error = "not a Linux bzImage: no boot sector signature and \"HdrS\" setup header";
            return null;
        }

        var image = new BzImage(file);
        if (image.Protocol < MinimumProtocol)
        {
            error = $"Linux boot protocol {image.Protocol >> 8}.{image.Protocol & 0xFF:d2} is older than 2.06, the oldest HybridVmm boots";
            return null;
        }

        if ((image.LoadFlags & LoadedHigh) == 0)
        {
            error = "a zImage (kernel loaded below 1 MiB) is not supported; build a bzImage";
            return null;
        }

        if (image.ProtectedModeOffset >= file.Length)
        {
            error = $"the image is truncated: {image.SetupSectors} setup sectors leave no protected-mode kernel in {file.Length} bytes";
            return null;
        }

        error = "";
        return image;
    }

    private ushort U16(int offset) => BinaryPrimitives.ReadUInt16LittleEndian(_file.AsSpan(offset));

    private uint U32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_file.AsSpan(offset));
}
