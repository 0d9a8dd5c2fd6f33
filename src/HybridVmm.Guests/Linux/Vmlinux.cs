using System.Buffers.Binary;
using HybridVmm.Guests.Elf;

namespace HybridVmm.Guests.Linux;

/// <summary>
/// An unpacked Linux kernel: the vmlinux ELF a bzImage's payload holds, or a vmlinux file given as the image, as
/// Firecracker boots it. Its PT_LOAD segments go to their physical addresses (LOAD_PHYSICAL_ADDR and up, where the
/// decompressor leaves a kernel it does not relocate), and it starts at the ELF entry, its physical startup_32.
/// Parsing never throws for bad input: it returns null and a one-line reason.
/// </summary>
public sealed class Vmlinux
{
    private const uint PtNote = 4;

    private readonly byte[] _file;
    private readonly Elf32Image _elf;

    private Vmlinux(byte[] file, Elf32Image elf)
    {
        _file = file;
        _elf = elf;
    }

    public uint Entry => _elf.Entry;

    public IReadOnlyList<LoadSegment> Segments => _elf.Segments;

    public ReadOnlySpan<byte> FileBytes(LoadSegment segment) => _file.AsSpan(segment.FileOffset, (int)segment.FileSize);

    /// <summary>The lowest physical address a segment starts at: where the kernel runs.</summary>
    public uint Start => Segments.Min(s => s.PhysicalAddress);

    /// <summary>The highest physical address a segment reaches (BSS and brk included), plus one.</summary>
    public ulong End => Segments.Max(s => (ulong)s.PhysicalAddress + s.MemorySize);

    /// <summary>
    /// Whether <paramref name="file"/> is an ELF whose program headers hold a PT_NOTE with a note owned by "Linux"
    /// (every vmlinux since 4.18 carries LINUX_ELFNOTE_BUILD_SALT), so that a Multiboot ELF is never taken for one.
    /// </summary>
    public static bool IsLinuxElf(ReadOnlySpan<byte> file)
    {
        if (!Elf32Image.HasElfMagic(file) || file.Length < 52 || file[4] != 1)
        {
            return false;
        }

        uint phoff = BinaryPrimitives.ReadUInt32LittleEndian(file[28..]);
        ushort phentsize = BinaryPrimitives.ReadUInt16LittleEndian(file[42..]);
        ushort phnum = BinaryPrimitives.ReadUInt16LittleEndian(file[44..]);
        if (phentsize < 32 || (ulong)phoff + (ulong)phentsize * phnum > (ulong)file.Length)
        {
            return false;
        }

        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = file.Slice((int)phoff + i * phentsize, 32);
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]), size = BinaryPrimitives.ReadUInt32LittleEndian(ph[16..]);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) == PtNote && (ulong)offset + size <= (ulong)file.Length
                && HasLinuxNote(file.Slice((int)offset, (int)size)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Notes are namesz, descsz, type, then the name and the descriptor, each padded to 4 bytes (System V ABI).</summary>
    private static bool HasLinuxNote(ReadOnlySpan<byte> notes)
    {
        while (notes.Length >= 12)
        {
            uint nameSize = BinaryPrimitives.ReadUInt32LittleEndian(notes), descSize = BinaryPrimitives.ReadUInt32LittleEndian(notes[4..]);
            ulong next = 12 + (((ulong)nameSize + 3) & ~3UL) + (((ulong)descSize + 3) & ~3UL);
            if (12 + (ulong)nameSize > (ulong)notes.Length)
            {
                return false;
            }

            if (notes.Slice(12, (int)nameSize).SequenceEqual("Linux\0"u8))
            {
                return true;
            }

            if (next > (ulong)notes.Length)
            {
                return false;
            }

            notes = notes[(int)next..];
        }

        return false;
    }

    /// <summary>The kernel's segments and entry, or null and a reason when it is no loadable i386 kernel.</summary>
    public static Vmlinux? TryParse(byte[] file, out string error)
    {
        if (Elf32Image.HasElfMagic(file) && file.Length > 4 && file[4] == 2)
        {
            error = "the kernel is a 64-bit vmlinux; HybridVmm boots i386 kernels (ELF32, EM_386)";
            return null;
        }

        if (Elf32Image.TryParse(file, out error) is not { } elf)
        {
            error = $"not a loadable vmlinux: {error}";
            return null;
        }

        foreach (LoadSegment s in elf.Segments)
        {
            if (s.PhysicalAddress < LinuxBoot.KernelLoadAddress)
            {
                error = $"a vmlinux segment at 0x{s.PhysicalAddress:x8} lies below 1 MiB, where the boot loader's zero page and command line are";
                return null;
            }
        }

        if (!elf.Segments.Any(s => elf.Entry >= s.PhysicalAddress && elf.Entry < s.PhysicalAddress + s.FileSize))
        {
            error = $"the vmlinux entry 0x{elf.Entry:x8} lies in none of its segments";
            return null;
        }

        error = "";
        return new Vmlinux(file, elf);
    }
}
