using System.Buffers.Binary;
using System.Text;
using HybridVmm.Guests.Elf;
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

    /// <summary>
    /// Lays out <paramref name="image"/> with <paramref name="commandLine"/> and an optional initrd in a guest of
    /// <paramref name="memoryBytes"/> for its own decompressor: the protected-mode code at 1 MiB, entered at code32_start.
    /// </summary>
    public static LinuxBootPlan? Layout(BzImage image, ulong memoryBytes, string commandLine, ReadOnlyMemory<byte>? initrd, out string error)
    {
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

        var kernel = new KernelPlacement([new GuestWrite(KernelLoadAddress, image.ProtectedMode.ToArray())], image.Code32Start,
            runAt, image.InitSize, Math.Max(loadEnd, runAt + image.InitSize));
        return Place(kernel, new HeaderFields(image), memoryBytes, commandLine, initrd, acpiRsdp: 0, out error);
    }

    /// <summary>
    /// Lays out a kernel unpacked on the host (<see cref="KernelPayload"/>, or a vmlinux given as the image) as its
    /// decompressor would have left it when not relocating it (arch/x86/boot/compressed/misc.c, parse_elf): each PT_LOAD
    /// segment at its physical address, entered at the ELF entry. <paramref name="image"/> is the bzImage it came from,
    /// whose setup header goes into the zero page and whose init_size bounds the kernel's footprint; null for a bare
    /// vmlinux, which gets the protocol's defaults (<see cref="VmlinuxSetupHeader"/>). <paramref name="acpiRsdp"/> is
    /// the firmware's RSDP, which the decompressor finds and records in boot_params.acpi_rsdp_addr (0 for none).
    /// </summary>
    public static LinuxBootPlan? Layout(Vmlinux kernel, BzImage? image, ulong memoryBytes, string commandLine, ReadOnlyMemory<byte>? initrd,
        uint acpiRsdp, out string error)
    {
        var writes = new List<GuestWrite>();
        foreach (LoadSegment s in kernel.Segments)
        {
            if ((ulong)s.PhysicalAddress + s.MemorySize > PcRamLayout.BelowFourGiB(memoryBytes))
            {
                error = $"the kernel's segment at 0x{s.PhysicalAddress:x8} (+{s.MemorySize} bytes) does not fit in {Mib(memoryBytes)} MiB of guest memory";
                return null;
            }

            // Only the file's bytes: the kernel clears its own BSS, as after the decompressor.
            writes.Add(new GuestWrite(s.PhysicalAddress, kernel.FileBytes(s).ToArray()));
        }

        uint initSize = image?.InitSize ?? (uint)(kernel.End - kernel.Start);
        var placement = new KernelPlacement(writes, kernel.Entry, kernel.Start, initSize, Math.Max(kernel.End, (ulong)kernel.Start + initSize));
        return Place(placement, image is null ? HeaderFields.Vmlinux : new HeaderFields(image), memoryBytes, commandLine, initrd, acpiRsdp, out error);
    }

    /// <summary>Where a kernel's bytes go, where it starts, and the footprint it needs from where it runs.</summary>
    private sealed record KernelPlacement(IReadOnlyList<GuestWrite> Writes, uint Entry, ulong RunAt, uint InitSize, ulong End);

    /// <summary>The setup-header fields the layout reads, and the header's bytes for the zero page.</summary>
    private sealed record HeaderFields(byte[] SetupHeader, uint CommandLineSize, uint InitrdAddressMax)
    {
        public HeaderFields(BzImage image) : this(image.SetupHeader.ToArray(), image.CommandLineSize, image.InitrdAddressMax)
        {
        }

        public static readonly HeaderFields Vmlinux = new(VmlinuxSetupHeader(), VmlinuxCommandLineSize, VmlinuxInitrdAddressMax);
    }

    /// <summary>COMMAND_LINE_SIZE (2048) less its NUL: what a bare vmlinux takes, having no header to say.</summary>
    public const uint VmlinuxCommandLineSize = 2047;

    /// <summary>initrd_addr_max's default for protocols older than 2.03, and what every i386 kernel takes.</summary>
    public const uint VmlinuxInitrdAddressMax = 0x37FFFFFF;

    /// <summary>
    /// The setup header a bare vmlinux gets in its zero page (from 0x1F1), as Firecracker fills one for an ELF kernel:
    /// boot_flag 0xAA55, "HdrS", version 2.15, kernel_alignment 16 MiB and cmdline_size; the loader's fields follow.
    /// </summary>
    private static byte[] VmlinuxSetupHeader()
    {
        byte[] header = new byte[0x268 - BzImage.SetupHeaderOffset];
        Span<byte> h = header;
        int At(int zeroPageOffset) => zeroPageOffset - BzImage.SetupHeaderOffset;
        BinaryPrimitives.WriteUInt16LittleEndian(h[At(0x1FE)..], 0xAA55);
        BinaryPrimitives.WriteUInt32LittleEndian(h[At(0x202)..], 0x53726448); // "HdrS"
        BinaryPrimitives.WriteUInt16LittleEndian(h[At(0x206)..], 0x020F);
        BinaryPrimitives.WriteUInt32LittleEndian(h[At(0x22C)..], VmlinuxInitrdAddressMax);
        BinaryPrimitives.WriteUInt32LittleEndian(h[At(0x230)..], 0x0100_0000);
        BinaryPrimitives.WriteUInt32LittleEndian(h[At(0x238)..], VmlinuxCommandLineSize);
        return header;
    }

    /// <summary>What both boots share: the command line, the memory check, the initrd at the top, and the zero page.</summary>
    private static LinuxBootPlan? Place(KernelPlacement kernel, HeaderFields header, ulong memoryBytes, string commandLine,
        ReadOnlyMemory<byte>? initrd, uint acpiRsdp, out string error)
    {
        byte[] cmdline = Encoding.UTF8.GetBytes(commandLine);
        if ((uint)cmdline.Length > header.CommandLineSize)
        {
            error = $"the command line is {cmdline.Length} bytes; this kernel takes at most {header.CommandLineSize}";
            return null;
        }

        ulong kernelEnd = kernel.End;
        ulong needed = AlignUp(kernelEnd, PageSize) + (ulong)(initrd?.Length ?? 0);
        ulong low = PcRamLayout.BelowFourGiB(memoryBytes); // the kernel and initrd load below 4 GiB
        if (needed > low)
        {
            error = $"this kernel needs at least {Mib(needed)} MiB of guest memory (it runs at 0x{kernel.RunAt:x} and takes {Mib(kernel.InitSize)} MiB there" +
                    (initrd is { } r ? $", and the initrd is {Mib((ulong)r.Length)} MiB" : "") + $"); the guest has {Mib(memoryBytes)} MiB";
            return null;
        }

        uint initrdAddress = 0;
        if (initrd is { Length: > 0 } rd)
        {
            // As high as the kernel allows, page aligned, above everything the kernel itself will use.
            ulong top = Math.Min(low, (ulong)header.InitrdAddressMax + 1);
            ulong at = (top - (ulong)rd.Length) & ~(ulong)(PageSize - 1);
            if ((ulong)rd.Length > top || at < kernelEnd)
            {
                error = $"the initrd ({Mib((ulong)rd.Length)} MiB) does not fit between the kernel's end at 0x{kernelEnd:x} and its limit 0x{top:x}";
                return null;
            }

            initrdAddress = (uint)at;
        }

        var writes = new List<GuestWrite>(kernel.Writes)
        {
            new(ZeroPageAddress, BuildZeroPage(header.SetupHeader, memoryBytes, initrdAddress, (uint)(initrd?.Length ?? 0), acpiRsdp)),
            new(CommandLineAddress, [.. cmdline, 0]),
        };
        if (initrdAddress != 0)
        {
            writes.Add(new GuestWrite(initrdAddress, initrd!.Value.ToArray()));
        }

        error = "";
        return new LinuxBootPlan(writes, kernel.Entry, ZeroPageAddress, initrdAddress, (uint)kernelEnd);
    }

    /// <summary>The guest's physical memory map as the BIOS's INT 15h E820 would report it: (base, length, type 1 RAM / 2 reserved).</summary>
    /// A guest of 3584 MiB or more has a fifth entry: its RAM above 4 GiB (<see cref="PcRamLayout"/>), as SeaBIOS
    /// reports QEMU's.
    public static IReadOnlyList<(ulong Base, ulong Length, uint Type)> MemoryMap(ulong memoryBytes)
    {
        ulong low = PcRamLayout.BelowFourGiB(memoryBytes), high = PcRamLayout.AboveFourGiB(memoryBytes);
        List<(ulong Base, ulong Length, uint Type)> map =
        [
            (0, ConventionalTop, 1),
            (ConventionalTop, 0xA0000 - ConventionalTop, 2),  // the extended BIOS data area
            (BiosAreaStart, KernelLoadAddress - BiosAreaStart, 2), // the system BIOS
            (KernelLoadAddress, low - KernelLoadAddress, 1),
        ];
        if (high != 0)
        {
            map.Add((PcRamLayout.HighBase, high, 1));
        }

        return map;
    }

    private static byte[] BuildZeroPage(ReadOnlySpan<byte> setupHeader, ulong memoryBytes, uint initrdAddress, uint initrdSize, uint acpiRsdp)
    {
        byte[] page = new byte[PageSize];
        Span<byte> p = page;
        setupHeader.CopyTo(p[BzImage.SetupHeaderOffset..]);
        BinaryPrimitives.WriteUInt64LittleEndian(p[0x070..], acpiRsdp);                // acpi_rsdp_addr, as the decompressor records it

        // screen_info.ext_mem_k and alt_mem_k: memory above 1 MiB in KiB (the old BIOS calls' answers).
        uint extendedKib = (uint)((PcRamLayout.BelowFourGiB(memoryBytes) - KernelLoadAddress) / 1024);
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
