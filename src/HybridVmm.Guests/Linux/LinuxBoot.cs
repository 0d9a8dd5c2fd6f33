using System.Buffers.Binary;
using System.Text;
using HybridVmm.Guests.Multiboot;

namespace HybridVmm.Guests.Linux;

/// <summary>Where a Linux boot leaves things: the guest-memory writes, and the registers the 32-bit boot protocol hands over.</summary>
public sealed record LinuxBootPlan(IReadOnlyList<GuestWrite> Writes, uint Entry, uint ZeroPage, uint InitrdAddress, uint KernelEnd);

/// <summary>
/// The Linux 32-bit boot protocol (Documentation/arch/x86/boot.rst, "32-bit boot protocol"), as a boot loader that
/// skips the kernel's real-mode setup does it: the protected-mode kernel at 0x100000, a zero page (struct
/// boot_params) with the file's setup header copied in and the loader's fields filled, the command line, an E820
/// memory map standing in for the BIOS's, and the initrd at the top of memory. The vCPU then starts in flat 32-bit
/// protected mode with paging off and interrupts disabled, CS = __BOOT_CS (0x10), DS = ES = SS = __BOOT_DS (0x18),
/// ESI = the zero page, and EBP = EDI = EBX = 0.
/// </summary>
/// <remarks>
/// The layout follows the low-memory conventions Firecracker and QEMU share for a direct kernel boot: the zero page at
/// 0x7000 and the command line at 0x20000, both in conventional memory the kernel reserves early.
/// </remarks>
public static class LinuxBoot
{
    public const uint ZeroPageAddress = 0x7000;
    public const uint CommandLineAddress = 0x20000;
    public const uint KernelLoadAddress = 0x100000;
    public const ushort BootCodeSelector = 0x10;
    public const ushort BootDataSelector = 0x18;

    /// <summary>type_of_loader 0xFF: "undefined", the protocol's value for a loader without an assigned ID.</summary>
    public const byte LoaderType = 0xFF;

    private const uint ConventionalTop = 0x9FC00;
    private const uint BiosAreaStart = 0xF0000;
    private const uint PageSize = 4096;

    /// <summary>Lays out <paramref name="image"/> with <paramref name="commandLine"/> and an optional initrd in a guest of <paramref name="memoryBytes"/>.</summary>
    public static LinuxBootPlan? Layout(BzImage image, uint memoryBytes, string commandLine, ReadOnlyMemory<byte>? initrd, out string error)
    {
        byte[] cmdline = Encoding.UTF8.GetBytes(commandLine);
        if ((uint)cmdline.Length > image.CommandLineSize)
        {
            error = $"the command line is {cmdline.Length} bytes; this kernel takes at most {image.CommandLineSize}";
            return null;
        }

        uint loadEnd = KernelLoadAddress + (uint)image.ProtectedMode.Length;
        if (image.Code32Start < KernelLoadAddress || image.Code32Start >= loadEnd)
        {
            error = $"the kernel's 32-bit entry 0x{image.Code32Start:x8} lies outside its protected-mode code at 0x{KernelLoadAddress:x}";
            return null;
        }

        // Where the kernel will run: a relocatable kernel loaded below its preferred address decompresses itself there
        // (rounded up to its alignment); a fixed one runs at its preferred address. Either way it then needs init_size.
        ulong runAt = image.PreferredAddress;
        if (image.Relocatable && image.KernelAlignment != 0)
        {
            ulong aligned = (KernelLoadAddress + (ulong)image.KernelAlignment - 1) / image.KernelAlignment * image.KernelAlignment;
            runAt = Math.Max(aligned, image.PreferredAddress);
        }

        ulong kernelEnd = Math.Max(loadEnd, runAt + image.InitSize);
        ulong needed = AlignUp(kernelEnd, PageSize) + (ulong)(initrd?.Length ?? 0);
        if (needed > memoryBytes)
        {
            error = $"this kernel needs at least {Mib(needed)} MiB of guest memory (it runs at 0x{runAt:x} and takes {Mib(image.InitSize)} MiB there" +
                    (initrd is { } r ? $", and the initrd is {Mib((ulong)r.Length)} MiB" : "") + $"); the guest has {Mib(memoryBytes)} MiB";
            return null;
        }

        uint initrdAddress = 0;
        if (initrd is { Length: > 0 } rd)
        {
            // As high as the kernel allows, page aligned, above everything the kernel itself will use.
            ulong top = Math.Min(memoryBytes, (ulong)image.InitrdAddressMax + 1);
            ulong at = (top - (ulong)rd.Length) & ~(ulong)(PageSize - 1);
            if ((ulong)rd.Length > top || at < kernelEnd)
            {
                error = $"the initrd ({Mib((ulong)rd.Length)} MiB) does not fit between the kernel's end at 0x{kernelEnd:x} and its limit 0x{top:x}";
                return null;
            }

            initrdAddress = (uint)at;
        }

        var writes = new List<GuestWrite>
        {
            new(KernelLoadAddress, image.ProtectedMode.ToArray()),
            new(ZeroPageAddress, BuildZeroPage(image, memoryBytes, initrdAddress, (uint)(initrd?.Length ?? 0))),
            new(CommandLineAddress, [.. cmdline, 0]),
        };
        if (initrdAddress != 0)
        {
            writes.Add(new GuestWrite(initrdAddress, initrd!.Value.ToArray()));
        }

        error = "";
        return new LinuxBootPlan(writes, image.Code32Start, ZeroPageAddress, initrdAddress, (uint)kernelEnd);
    }

    /// <summary>The guest's physical memory map as the BIOS's INT 15h E820 would report it: (base, length, type 1 RAM / 2 reserved).</summary>
    public static IReadOnlyList<(ulong Base, ulong Length, uint Type)> MemoryMap(uint memoryBytes) =>
    [
        (0, ConventionalTop, 1),
        (ConventionalTop, 0xA0000 - ConventionalTop, 2),  // the extended BIOS data area
        (BiosAreaStart, KernelLoadAddress - BiosAreaStart, 2), // the system BIOS
        (KernelLoadAddress, memoryBytes - KernelLoadAddress, 1),
    ];

    private static byte[] BuildZeroPage(BzImage image, uint memoryBytes, uint initrdAddress, uint initrdSize)
    {
        byte[] page = new byte[PageSize];
        Span<byte> p = page;
        image.SetupHeader.CopyTo(p[BzImage.SetupHeaderOffset..]);

        // screen_info.ext_mem_k and alt_mem_k: memory above 1 MiB in KiB (the old BIOS calls' answers).
        uint extendedKib = (memoryBytes - KernelLoadAddress) / 1024;
        BinaryPrimitives.WriteUInt16LittleEndian(p[0x002..], (ushort)Math.Min(extendedKib, 0xFC00u));
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x1E0..], extendedKib);

        IReadOnlyList<(ulong Base, ulong Length, uint Type)> map = MemoryMap(memoryBytes);
        p[0x1E8] = (byte)map.Count;
        for (int i = 0; i < map.Count; i++)
        {
            Span<byte> entry = p[(0x2D0 + i * 20)..];
            BinaryPrimitives.WriteUInt64LittleEndian(entry, map[i].Base);
            BinaryPrimitives.WriteUInt64LittleEndian(entry[8..], map[i].Length);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[16..], map[i].Type);
        }

        // The loader's fields of the setup header.
        BinaryPrimitives.WriteUInt16LittleEndian(p[0x1FA..], 0xFFFF);                 // vid_mode: "normal"
        p[0x210] = LoaderType;                                                        // type_of_loader
        p[0x211] = BzImage.LoadedHigh;                                                // loadflags: no heap, no quiet, segments reloaded
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x218..], initrdAddress);          // ramdisk_image
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x21C..], initrdSize);             // ramdisk_size
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x228..], CommandLineAddress);     // cmd_line_ptr
        return page;
    }

    private static ulong AlignUp(ulong value, uint alignment) => (value + alignment - 1) / alignment * alignment;

    private static ulong Mib(ulong bytes) => (bytes + (1 << 20) - 1) >> 20;
}
