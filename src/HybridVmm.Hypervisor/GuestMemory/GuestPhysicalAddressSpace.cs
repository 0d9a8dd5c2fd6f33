using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hypervisor.GuestMemory;

/// <summary>
/// A child partition's guest-physical address space: RAM from GPA 0 up to its size, each 4 KiB page
/// backed by a host frame through the second-level page table. That table is the only path from the
/// guest to memory; host-side accessors here go through it too, so they can never reach another
/// partition's frames.
/// <para>
/// Every RAM page is logically writable. The kernel write-protects pages in the table for two reasons:
/// the frame is shared copy-on-write with a template or clone, or dirty-page tracking is on (live
/// migration). A guest write to such a page exits to the kernel, which resolves it here without the root.
/// </para>
/// </summary>
internal sealed class GuestPhysicalAddressSpace
{
    private readonly HostPhysicalMemory _memory;
    private readonly FrameAllocator _allocator;
    private readonly int[] _frames;
    private bool[]? _dirty;

    private GuestPhysicalAddressSpace(HostPhysicalMemory memory, FrameAllocator allocator, uint sizeBytes)
    {
        _memory = memory;
        _allocator = allocator;
        SizeBytes = sizeBytes;
        _frames = new int[sizeBytes >> HostPhysicalMemory.FrameShift];
        Slat = new SecondLevelPageTable(_frames.Length);
    }

    public SecondLevelPageTable Slat { get; }

    public uint SizeBytes { get; }

    public int PageCount => _frames.Length;

    /// <summary>Pages copied on first write since this space was cloned or created.</summary>
    public long CopyOnWriteCopies { get; private set; }

    /// <summary>Pages whose frame is shared with another address space right now.</summary>
    public int SharedPages
    {
        get
        {
            int shared = 0;
            foreach (int frame in _frames)
            {
                if (_allocator.References(frame) > 1)
                {
                    shared++;
                }
            }

            return shared;
        }
    }

    public bool DirtyTracking => _dirty is not null;

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

        var space = new GuestPhysicalAddressSpace(memory, allocator, sizeBytes);
        for (uint page = 0; page < pages; page++)
        {
            allocator.TryAllocate(out int frame);
            space._frames[page] = frame;
            space.Slat.Map(page, frame, writable: true);
        }

        return space;
    }

    /// <summary>
    /// A clone that shares every frame with this space, copy-on-write: both sides lose write access to the
    /// shared frames and get a private copy of a page at its first write.
    /// </summary>
    public GuestPhysicalAddressSpace CloneCopyOnWrite()
    {
        var clone = new GuestPhysicalAddressSpace(_memory, _allocator, SizeBytes);
        for (uint page = 0; page < _frames.Length; page++)
        {
            int frame = _frames[page];
            _allocator.Share(frame);
            clone._frames[page] = frame;
            clone.Slat.Map(page, frame, writable: false);
            Slat.SetWritable(page, false);
        }

        return clone;
    }

    public void Release()
    {
        for (uint page = 0; page < _frames.Length; page++)
        {
            Slat.Unmap(page);
        }

        _allocator.Free(_frames);
    }

    /// <summary>
    /// Resolves a guest write to a write-protected RAM page: copies a shared frame, records the page as
    /// dirty when tracking, and makes the page writable again. False when the address is not RAM, or when
    /// <paramref name="exhausted"/>: the page is shared and the host has no free frame for its copy.
    /// </summary>
    public bool TryResolveWriteFault(uint gpa, out bool copied, out bool exhausted)
    {
        copied = false;
        exhausted = false;
        uint page = gpa >> HostPhysicalMemory.FrameShift;
        if (page >= (uint)_frames.Length)
        {
            return false;
        }

        if (!PrivatizePage(page, out copied))
        {
            exhausted = true;
            return false;
        }

        if (_dirty is not null)
        {
            _dirty[page] = true;
        }

        Slat.SetWritable(page, true);
        return true;
    }

    /// <summary>Starts dirty-page tracking: every page is write-protected and counts as dirty once written.</summary>
    public void StartDirtyTracking()
    {
        _dirty = new bool[_frames.Length];
        for (uint page = 0; page < _frames.Length; page++)
        {
            Slat.SetWritable(page, false);
        }
    }

    /// <summary>The pages written since the last call (or since tracking started); they are write-protected again.</summary>
    public List<uint> CollectDirtyPages()
    {
        var pages = new List<uint>();
        if (_dirty is null)
        {
            return pages;
        }

        for (uint page = 0; page < _dirty.Length; page++)
        {
            if (_dirty[page])
            {
                pages.Add(page);
                _dirty[page] = false;
                Slat.SetWritable(page, false);
            }
        }

        return pages;
    }

    public void StopDirtyTracking()
    {
        if (_dirty is null)
        {
            return;
        }

        _dirty = null;
        for (uint page = 0; page < _frames.Length; page++)
        {
            Slat.SetWritable(page, _allocator.References(_frames[page]) == 1);
        }
    }

    public bool TryWrite(uint gpa, ReadOnlySpan<byte> data)
    {
        if ((ulong)gpa + (ulong)data.Length > SizeBytes)
        {
            return false;
        }

        // The host writes through the same copy-on-write discipline as the guest, and never into a frame still shared.
        for (uint page = gpa >> HostPhysicalMemory.FrameShift; page <= (gpa + (uint)Math.Max(data.Length - 1, 0)) >> HostPhysicalMemory.FrameShift; page++)
        {
            if (!PrivatizePage(page, out _))
            {
                return false;
            }

            if (_dirty is not null)
            {
                _dirty[page] = true;
            }
        }

        Copy(gpa, data.Length, write: true, data, Span<byte>.Empty);
        HostWrote?.Invoke(gpa, data.Length);
        return true;
    }

    public bool TryRead(uint gpa, Span<byte> destination)
    {
        if ((ulong)gpa + (ulong)destination.Length > SizeBytes)
        {
            return false;
        }

        Copy(gpa, destination.Length, write: false, ReadOnlySpan<byte>.Empty, destination);
        return true;
    }

    /// <summary>Whether a page holds only zero bytes (snapshots and migration skip those).</summary>
    public bool IsZeroPage(uint page) =>
        !_memory.Frame(_frames[page]).ContainsAnyExcept((byte)0);

    private bool PrivatizePage(uint page, out bool copied)
    {
        copied = false;
        int frame = _frames[page];
        if (_allocator.References(frame) == 1)
        {
            return true;
        }

        if (!_allocator.TryAllocate(out int copy))
        {
            return false;
        }

        _memory.Frame(frame).CopyTo(_memory.Frame(copy));
        _allocator.Free(frame);
        _frames[page] = copy;
        Slat.Map(page, copy, writable: _dirty is null);
        CopyOnWriteCopies++;
        copied = true;
        return true;
    }

    private void Copy(uint gpa, int length, bool write, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int done = 0;
        while (done < length)
        {
            uint address = gpa + (uint)done;
            int frame = _frames[address >> HostPhysicalMemory.FrameShift];
            int offset = (int)(address & (HostPhysicalMemory.FrameSize - 1));
            int chunk = Math.Min(length - done, HostPhysicalMemory.FrameSize - offset);
            Span<byte> host = _memory.Frame(frame).Slice(offset, chunk);
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
    }
}
