using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// A child partition's guest-physical address space: RAM from GPA 0 up to its size, each 4 KiB page
/// backed by a host frame through the second-level page table. That table is the only path from the
/// guest to memory; host-side accessors here go through it too, so they can never reach another
/// partition's frames.
/// </summary>
public sealed class GuestPhysicalAddressSpace
{
    private readonly HostPhysicalMemory _memory;
    private readonly List<int> _frames = new();

    private GuestPhysicalAddressSpace(HostPhysicalMemory memory, SecondLevelPageTable slat, uint sizeBytes)
    {
        _memory = memory;
        Slat = slat;
        SizeBytes = sizeBytes;
    }

    public SecondLevelPageTable Slat { get; }

    public uint SizeBytes { get; }

    /// <summary>Called when the host writes guest memory, so decoded-instruction caches stay coherent.</summary>
    public event Action<uint, int>? HostWrote;

    /// <summary>Allocates and maps RAM. Returns null when the host has too few free frames.</summary>
    public static GuestPhysicalAddressSpace? TryCreate(HostPhysicalMemory memory, FrameAllocator allocator, uint sizeBytes)
    {
        int pages = (int)(sizeBytes >> HostPhysicalMemory.FrameShift);
        if (pages == 0 || allocator.FreeFrames < pages)
        {
            return null;
        }

        var space = new GuestPhysicalAddressSpace(memory, new SecondLevelPageTable(pages), sizeBytes);
        for (uint page = 0; page < pages; page++)
        {
            allocator.TryAllocate(out int frame);
            space._frames.Add(frame);
            space.Slat.Map(page, frame, writable: true);
        }

        return space;
    }

    public void Release(FrameAllocator allocator)
    {
        for (uint page = 0; page < _frames.Count; page++)
        {
            Slat.Unmap(page);
            allocator.Free(_frames[(int)page]);
        }

        _frames.Clear();
    }

    public bool TryWrite(uint gpa, ReadOnlySpan<byte> data)
    {
        if (!CopyThroughSlat(gpa, data.Length, write: true, data, Span<byte>.Empty))
        {
            return false;
        }

        HostWrote?.Invoke(gpa, data.Length);
        return true;
    }

    public bool TryRead(uint gpa, Span<byte> destination) =>
        CopyThroughSlat(gpa, destination.Length, write: false, ReadOnlySpan<byte>.Empty, destination);

    private bool CopyThroughSlat(uint gpa, int length, bool write, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if ((ulong)gpa + (ulong)length > SizeBytes)
        {
            return false;
        }

        int done = 0;
        while (done < length)
        {
            uint address = gpa + (uint)done;
            if (!Slat.TryTranslate(address, write: false, out uint hpa))
            {
                return false;
            }

            int chunk = Math.Min(length - done, HostPhysicalMemory.FrameSize - (int)(address & (HostPhysicalMemory.FrameSize - 1)));
            Span<byte> host = _memory.Bytes.AsSpan((int)hpa, chunk);
            if (write)
            {
                source.Slice(done, chunk).CopyTo(host);
            }
            else
            {
                host.CopyTo(destination.Slice(done, chunk));
            }

            done += chunk;
        }

        return true;
    }
}
