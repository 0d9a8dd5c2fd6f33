using System.Buffers.Binary;
using System.Text;

namespace HybridVmm.Guests.Multiboot;

/// <summary>One contiguous write the loader asks the host to make into guest memory.</summary>
public readonly record struct GuestWrite(uint GuestPhysicalAddress, byte[] Data);

/// <summary>
/// Builds the Multiboot information structure (Multiboot 0.6.96, 3.3) and the boot-time layout of guest
/// memory. Everything sits in one page at <see cref="InfoAddress"/>, below the 640 KiB conventional limit; a kernel
/// that loads over that page (kvm-unit-tests' realmode test loads at 0x8000) gets it in the first free page after its
/// image instead, as QEMU's Multiboot loader places its information after the kernel. EBX says where it is.
/// </summary>
public static class BootInformation
{
    public const uint BootloaderMagic = 0x2BADB002;
    public const uint InfoAddress = 0x9000;
    public const uint InfoPageEnd = 0xA000;
    public const string LoaderName = "HybridVmm";

    private const uint MmapOffset = 0x80;
    private const uint NameOffset = 0x100;
    private const uint CmdlineOffset = 0x200;
    private const uint PageSize = InfoPageEnd - InfoAddress;
    public const int MaxCommandLineBytes = (int)(PageSize - CmdlineOffset) - 1;

    /// <summary>The conventional-memory top reported as mem_lower and the first reserved mmap range (EBDA).</summary>
    private const uint ConventionalTop = 0x9FC00;
    private const uint HighMemoryStart = 0x100000;

    [Flags]
    private enum InfoFlags : uint
    {
        Memory = 1 << 0,
        CommandLine = 1 << 2,
        MemoryMap = 1 << 6,
        BootLoaderName = 1 << 9,
    }

    /// <summary>Places <paramref name="image"/> and its boot information in a guest of <paramref name="memoryBytes"/>.
    /// Returns null and a reason when the image does not fit.</summary>
    public static IReadOnlyList<GuestWrite>? Layout(MultibootImage image, ulong memoryBytes, string commandLine, out string error) =>
        Layout(image, memoryBytes, commandLine, out _, out error);

    /// <inheritdoc cref="Layout(MultibootImage, ulong, string, out string)"/>
    /// <param name="infoAddress">Where the information page went: the address the loader passes in EBX.</param>
    public static IReadOnlyList<GuestWrite>? Layout(MultibootImage image, ulong memoryBytes, string commandLine, out uint infoAddress, out string error)
    {
        infoAddress = InfoAddress;
        byte[] cmdline = Encoding.UTF8.GetBytes(commandLine);
        if (cmdline.Length > MaxCommandLineBytes)
        {
            error = $"the command line is {cmdline.Length} bytes; at most {MaxCommandLineBytes} fit";
            return null;
        }

        if (memoryBytes < 2 * HighMemoryStart)
        {
            error = $"guest memory must be at least 2 MiB, got {memoryBytes} bytes";
            return null;
        }

        if (image.Segments.Any(s => Overlaps(s, InfoAddress)))
        {
            // The first free page after the image's segments in conventional memory.
            ulong end = image.Segments.Where(s => s.PhysicalAddress < ConventionalTop).Max(s => (ulong)s.PhysicalAddress + s.MemorySize);
            ulong candidate = (end + PageSize - 1) & ~(ulong)(PageSize - 1);
            if (candidate + PageSize > ConventionalTop || image.Segments.Any(s => Overlaps(s, (uint)candidate)))
            {
                error = $"the image leaves no free page below 0x{ConventionalTop:x} for the boot information (its segments cover 0x{InfoAddress:x})";
                return null;
            }

            infoAddress = (uint)candidate;
        }

        // An ELF32 image loads below 4 GiB: into the RAM there (all of it below 3584 MiB, 3 GiB from that size on).
        ulong low = PcRamLayout.BelowFourGiB(memoryBytes);
        var writes = new List<GuestWrite>();
        foreach (Elf.LoadSegment s in image.Segments)
        {
            ulong end = (ulong)s.PhysicalAddress + s.MemorySize;
            if (end > low)
            {
                error = $"segment at 0x{s.PhysicalAddress:x8} (+{s.MemorySize} bytes) does not fit in {memoryBytes / (1024 * 1024)} MiB of guest memory";
                return null;
            }

            byte[] data = new byte[s.MemorySize];
            image.FileBytes(s).CopyTo(data);
            writes.Add(new GuestWrite(s.PhysicalAddress, data));
        }

        if (image.Entry >= low)
        {
            error = $"entry point 0x{image.Entry:x8} lies outside guest memory";
            return null;
        }

        writes.Add(new GuestWrite(infoAddress, BuildInfoPage(infoAddress, memoryBytes, cmdline)));
        error = "";
        return writes;
    }

    private static bool Overlaps(Elf.LoadSegment s, uint page) =>
        s.PhysicalAddress < (ulong)page + PageSize && (ulong)s.PhysicalAddress + s.MemorySize > page;

    private static byte[] BuildInfoPage(uint infoAddress, ulong memoryBytes, byte[] cmdline)
    {
        uint mmapAddress = infoAddress + MmapOffset, nameAddress = infoAddress + NameOffset, cmdlineAddress = infoAddress + CmdlineOffset;
        byte[] page = new byte[PageSize];
        Span<byte> info = page;
        InfoFlags flags = InfoFlags.Memory | InfoFlags.CommandLine | InfoFlags.MemoryMap | InfoFlags.BootLoaderName;
        BinaryPrimitives.WriteUInt32LittleEndian(info[0..], (uint)flags);
        BinaryPrimitives.WriteUInt32LittleEndian(info[4..], ConventionalTop / 1024);                   // mem_lower (KiB)
        // mem_upper (KiB): the RAM from 1 MiB up to the first hole, as QEMU's Multiboot loader reports it (the RAM
        // above 4 GiB is not counted; it is in the memory map).
        ulong low = PcRamLayout.BelowFourGiB(memoryBytes), high = PcRamLayout.AboveFourGiB(memoryBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(info[8..], (uint)((low - HighMemoryStart) / 1024));
        BinaryPrimitives.WriteUInt32LittleEndian(info[16..], cmdlineAddress);                        // cmdline
        BinaryPrimitives.WriteUInt32LittleEndian(info[64..], nameAddress);                           // boot_loader_name

        (ulong Base, ulong Length, uint Type)[] map = high == 0
            ? [(0, ConventionalTop, 1), (ConventionalTop, HighMemoryStart - ConventionalTop, 2), (HighMemoryStart, low - HighMemoryStart, 1)]
            : [(0, ConventionalTop, 1), (ConventionalTop, HighMemoryStart - ConventionalTop, 2), (HighMemoryStart, low - HighMemoryStart, 1),
               (PcRamLayout.HighBase, high, 1)];
        int at = (int)MmapOffset;
        foreach ((ulong b, ulong len, uint type) in map)
        {
            // Each entry starts with its size, which does not count the size field itself.
            BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(at), 20);
            BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(at + 4), b);
            BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(at + 12), len);
            BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(at + 20), type);
            at += 24;
        }

        BinaryPrimitives.WriteUInt32LittleEndian(info[44..], (uint)(map.Length * 24));               // mmap_length
        BinaryPrimitives.WriteUInt32LittleEndian(info[48..], mmapAddress);                           // mmap_addr

        Encoding.ASCII.GetBytes(LoaderName).CopyTo(page.AsSpan((int)NameOffset));
        cmdline.CopyTo(page.AsSpan((int)CmdlineOffset));                            // NUL-terminated by the zeroed page
        return page;
    }
}
