using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hypervisor.GuestMemory;

/// <summary>
/// A child partition's guest-physical address space: RAM laid out as <see cref="GuestRam"/> says (from GPA 0 up to its
/// size, or for 3584 MiB and more 3 GiB from 0 and the rest from 4 GiB), each 4 KiB page backed by a host frame through
/// the second-level page table. Pages are indexed by guest page number; those of the hole between the two RAM ranges
/// have no frame (<see cref="NoFrame"/>) and are never mapped. That table is the only path from the
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
    /// <summary>The frame of a page in the hole between the RAM below 4 GiB and the RAM above it.</summary>
    private const int NoFrame = -1;

    private readonly HostPhysicalMemory _memory;
    private readonly FrameAllocator _allocator;
    private readonly int[] _frames;
    private bool[]? _dirty;

    private GuestPhysicalAddressSpace(HostPhysicalMemory memory, FrameAllocator allocator, ulong sizeBytes)
    {
        _memory = memory;
        _allocator = allocator;
        SizeBytes = sizeBytes;
        _frames = new int[GuestRam.End(sizeBytes) >> HostPhysicalMemory.FrameShift];
        Array.Fill(_frames, NoFrame);
        Slat = new SecondLevelPageTable(_frames.Length);
    }

    public SecondLevelPageTable Slat { get; }

    /// <summary>The RAM's size (not where it ends: see <see cref="PageCount"/>).</summary>
    public ulong SizeBytes { get; }

    /// <summary>Guest pages from 0 to the end of the highest RAM, the hole's included: page numbers are below it.</summary>
    public int PageCount => _frames.Length;

    /// <summary>Whether a guest page is RAM (not in the hole, not above the end).</summary>
    public bool IsRamPage(ulong page) => page < (ulong)_frames.Length && _frames[page] != NoFrame;

    /// <summary>Whether <c>[gpa, gpa + length)</c> lies in one RAM range.</summary>
    public bool IsRam(ulong gpa, ulong length) => GuestRam.IsRam(SizeBytes, gpa, length);

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
                if (frame != NoFrame && _allocator.References(frame) > 1)
                {
                    shared++;
                }
            }

            return shared;
        }
    }

    public bool DirtyTracking => _dirty is not null;

    /// <summary>Called when the host writes guest memory, so decoded-instruction caches stay coherent.</summary>
    public event Action<ulong, int>? HostWrote;

    /// <summary>Allocates and maps RAM. Returns null when the host has too few free frames.</summary>
    public static GuestPhysicalAddressSpace? TryCreate(HostPhysicalMemory memory, FrameAllocator allocator, ulong sizeBytes)
    {
        ulong pages = sizeBytes >> HostPhysicalMemory.FrameShift;
        if (pages == 0 || sizeBytes > GuestRam.MaxBytes || (ulong)allocator.FreeFrames < pages)
        {
            return null;
        }

        var space = new GuestPhysicalAddressSpace(memory, allocator, sizeBytes);
        for (ulong page = 0; page < (ulong)space._frames.Length; page++)
        {
            if (!GuestRam.IsRamPage(sizeBytes, page))
            {
                continue;
            }

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
            if (frame == NoFrame)
            {
                continue;
            }

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

        ulong below = GuestRam.BelowFourGiB(SizeBytes) >> HostPhysicalMemory.FrameShift;
        _allocator.Free(_frames.AsSpan(0, (int)below));
        _allocator.Free(_frames.AsSpan((int)below).TrimStart(NoFrame));
    }

    /// <summary>
    /// Resolves a guest write to a write-protected RAM page: copies a shared frame, records the page as
    /// dirty when tracking, and makes the page writable again. False when the address is not RAM, or when
    /// <paramref name="exhausted"/>: the page is shared and the host has no free frame for its copy.
    /// </summary>
    public bool TryResolveWriteFault(ulong gpa, out bool copied, out bool exhausted)
    {
        copied = false;
        exhausted = false;
        ulong page = gpa >> HostPhysicalMemory.FrameShift;
        if (!IsRamPage(page))
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
        var pages = new List<uint>(); // page numbers: 2^24 at most (MAXPHYADDR 36)
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
            if (_frames[page] != NoFrame)
            {
                Slat.SetWritable(page, _allocator.References(_frames[page]) == 1);
            }
        }
    }

    public bool TryWrite(ulong gpa, ReadOnlySpan<byte> data)
    {
        if (!IsRam(gpa, (ulong)data.Length))
        {
            return false;
        }

        // The host writes through the same copy-on-write discipline as the guest, and never into a frame still shared.
        for (ulong page = gpa >> HostPhysicalMemory.FrameShift; page <= (gpa + (ulong)Math.Max(data.Length - 1, 0)) >> HostPhysicalMemory.FrameShift; page++)
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

    public bool TryRead(ulong gpa, Span<byte> destination)
    {
        if (!IsRam(gpa, (ulong)destination.Length))
        {
            return false;
        }

        Copy(gpa, destination.Length, write: false, ReadOnlySpan<byte>.Empty, destination);
        return true;
    }

    /// <summary>Whether a page holds only zero bytes (snapshots and migration skip those).</summary>
    public bool IsZeroPage(uint page) =>
        _frames[page] == NoFrame || !_memory.Frame(_frames[page]).ContainsAnyExcept((byte)0);

    private bool PrivatizePage(ulong page, out bool copied)
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

    private void Copy(ulong gpa, int length, bool write, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int done = 0;
        while (done < length)
        {
            ulong address = gpa + (ulong)done;
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
