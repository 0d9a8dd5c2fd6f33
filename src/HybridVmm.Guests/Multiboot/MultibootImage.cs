using HybridVmm.Guests.Elf;

namespace HybridVmm.Guests.Multiboot;

/// <summary>
/// A Multiboot v1 kernel ready to place in guest memory: its segments and entry point.
/// Parsing never throws for bad input: it returns null and a one-line reason.
/// </summary>
public sealed class MultibootImage
{
    private readonly byte[] _file;

    private MultibootImage(byte[] file, uint entry, IReadOnlyList<LoadSegment> segments)
    {
        _file = file;
        Entry = entry;
        Segments = segments;
    }

    public uint Entry { get; }

    public IReadOnlyList<LoadSegment> Segments { get; }

    public ReadOnlySpan<byte> FileBytes(LoadSegment segment) => _file.AsSpan(segment.FileOffset, (int)segment.FileSize);

    /// <summary>The highest guest-physical address any segment touches, plus one.</summary>
    public ulong End
    {
        get
        {
            ulong end = 0;
            foreach (LoadSegment s in Segments)
            {
                end = Math.Max(end, (ulong)s.PhysicalAddress + s.MemorySize);
            }

            return end;
        }
    }

    public static MultibootImage? TryParse(byte[] file, out string error)
    {
        if (file.Length == 0)
        {
            error = "the image file is empty";
            return null;
        }

        MultibootHeader? found = MultibootHeader.TryFind(file, out error);
        if (found is not { } header)
        {
            return null;
        }

        if (header.HasAddressFields && !Elf32Image.HasElfMagic(file))
        {
            return FromAddressFields(file, header, out error);
        }

        Elf32Image? elf = Elf32Image.TryParse(file, out error);
        return elf is null ? null : new MultibootImage(file, elf.Entry, elf.Segments);
    }

    /// <summary>The a.out kludge (Multiboot 0.6.96, 3.1.3): a flat binary described by the header's address fields.</summary>
    private static MultibootImage? FromAddressFields(byte[] file, MultibootHeader h, out string error)
    {
        if (h.LoadAddress > h.HeaderAddress || h.HeaderAddress - h.LoadAddress > (uint)h.FileOffset)
        {
            error = "Multiboot address fields are inconsistent: header_addr - load_addr exceeds the header's file offset";
            return null;
        }

        int fileOffset = h.FileOffset - (int)(h.HeaderAddress - h.LoadAddress);
        uint loadEnd = h.LoadEndAddress == 0 ? h.LoadAddress + (uint)(file.Length - fileOffset) : h.LoadEndAddress;
        if (loadEnd < h.LoadAddress || (ulong)fileOffset + (loadEnd - h.LoadAddress) > (ulong)file.Length)
        {
            error = "Multiboot load_end_addr lies outside the file: the image is truncated";
            return null;
        }

        uint bssEnd = h.BssEndAddress == 0 ? loadEnd : h.BssEndAddress;
        if (bssEnd < loadEnd)
        {
            error = "Multiboot bss_end_addr lies below load_end_addr";
            return null;
        }

        error = "";
        var segment = new LoadSegment(h.LoadAddress, fileOffset, loadEnd - h.LoadAddress, bssEnd - h.LoadAddress);
        return new MultibootImage(file, h.EntryAddress, new[] { segment });
    }
}
