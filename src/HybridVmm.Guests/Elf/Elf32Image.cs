using System.Buffers.Binary;

namespace HybridVmm.Guests.Elf;

/// <summary>A PT_LOAD program header: where the bytes go and how much to zero after them (the BSS).</summary>
public readonly record struct LoadSegment(uint PhysicalAddress, int FileOffset, uint FileSize, uint MemorySize);

/// <summary>
/// The parts of an ELF32 executable a Multiboot loader needs (System V ABI, i386 supplement):
/// the entry point and the PT_LOAD segments. Every field is bounds-checked against the file.
/// </summary>
public sealed class Elf32Image
{
    private const uint PtLoad = 1;
    private const ushort EtExec = 2;
    private const ushort Em386 = 3;

    private Elf32Image(uint entry, IReadOnlyList<LoadSegment> segments)
    {
        Entry = entry;
        Segments = segments;
    }

    public uint Entry { get; }

    public IReadOnlyList<LoadSegment> Segments { get; }

    public static bool HasElfMagic(ReadOnlySpan<byte> file) =>
        file.Length >= 4 && file[0] == 0x7F && file[1] == (byte)'E' && file[2] == (byte)'L' && file[3] == (byte)'F';

    /// <summary>Parses the headers; returns null and a one-line reason when the file is not a loadable i386 ELF32.</summary>
    public static Elf32Image? TryParse(ReadOnlySpan<byte> file, out string error)
    {
        if (!HasElfMagic(file))
        {
            error = "not an ELF file (bad magic)";
            return null;
        }

        if (file.Length < 52)
        {
            error = $"ELF header truncated: file is {file.Length} bytes, the ELF32 header needs 52";
            return null;
        }

        if (file[4] != 1)
        {
            error = file[4] == 2 ? "ELF class is 64-bit; a Multiboot v1 kernel must be ELF32" : $"unknown ELF class {file[4]}";
            return null;
        }

        if (file[5] != 1)
        {
            error = "ELF data encoding is not little-endian";
            return null;
        }

        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(file[16..]);
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(file[18..]);
        uint entry = BinaryPrimitives.ReadUInt32LittleEndian(file[24..]);
        uint phoff = BinaryPrimitives.ReadUInt32LittleEndian(file[28..]);
        ushort phentsize = BinaryPrimitives.ReadUInt16LittleEndian(file[42..]);
        ushort phnum = BinaryPrimitives.ReadUInt16LittleEndian(file[44..]);

        if (machine != Em386)
        {
            error = $"ELF machine is {machine}, expected 3 (EM_386)";
            return null;
        }

        if (type != EtExec)
        {
            error = $"ELF type is {type}, expected 2 (ET_EXEC, an executable)";
            return null;
        }

        if (phnum == 0)
        {
            error = "ELF file has no program headers";
            return null;
        }

        if (phentsize < 32)
        {
            error = $"ELF program header size {phentsize} is smaller than 32";
            return null;
        }

        if ((ulong)phoff + (ulong)phentsize * phnum > (ulong)file.Length)
        {
            error = $"ELF program header table (offset {phoff}, {phnum} x {phentsize} bytes) runs past the end of the {file.Length}-byte file";
            return null;
        }

        var segments = new List<LoadSegment>();
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = file.Slice((int)phoff + i * phentsize, 32);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != PtLoad)
            {
                continue;
            }

            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]);
            uint paddr = BinaryPrimitives.ReadUInt32LittleEndian(ph[12..]);
            uint filesz = BinaryPrimitives.ReadUInt32LittleEndian(ph[16..]);
            uint memsz = BinaryPrimitives.ReadUInt32LittleEndian(ph[20..]);
            if ((ulong)offset + filesz > (ulong)file.Length)
            {
                error = $"segment {i} (offset {offset}, {filesz} bytes) runs past the end of the {file.Length}-byte file: the image is truncated";
                return null;
            }

            if (filesz > memsz)
            {
                error = $"segment {i} has a file size ({filesz}) larger than its memory size ({memsz})";
                return null;
            }

            if ((ulong)paddr + memsz > 0x1_0000_0000UL)
            {
                error = $"segment {i} at 0x{paddr:x8} (+{memsz} bytes) wraps past 4 GiB";
                return null;
            }

            if (memsz > 0)
            {
                segments.Add(new LoadSegment(paddr, (int)offset, filesz, memsz));
            }
        }

        if (segments.Count == 0)
        {
            error = "ELF file has no PT_LOAD segment to load";
            return null;
        }

        error = "";
        return new Elf32Image(entry, segments);
    }
}
