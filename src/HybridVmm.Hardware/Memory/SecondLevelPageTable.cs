namespace HybridVmm.Hardware.Memory;

/// <summary>
/// The second-level (guest-physical to host-physical) translation the hardware walks on every guest
/// memory access, in the role of Intel EPT (SDM Vol. 3C, ch. 29). The hypervisor programs it; the CPU
/// core only reads it. One entry per 4 KiB guest page: the host frame number plus permission bits.
/// An access that the table does not allow is an EPT-violation-like exit, never a host exception.
/// </summary>
public sealed class SecondLevelPageTable
{
    public const int NotPresent = -1;
    /// <summary>Entry bit: the mapping allows writes. Clear it to write-protect (dirty tracking, copy-on-write).</summary>
    public const int WritableBit = 1 << 30;
    public const int FrameMask = WritableBit - 1;

    private readonly int[] _entries;

    /// <param name="guestPageCount">Size of the guest-physical address space in 4 KiB pages (at most 2^24: MAXPHYADDR 36).</param>
    public SecondLevelPageTable(int guestPageCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(guestPageCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(guestPageCount, 1 << (GuestRam.MaxPhysicalAddressBits - HostPhysicalMemory.FrameShift));
        _entries = new int[guestPageCount];
        Array.Fill(_entries, NotPresent);
    }

    public int GuestPageCount => _entries.Length;

    /// <summary>Raw entries indexed by guest page number: <see cref="NotPresent"/> or frame | flags. Read-only for the core.</summary>
    public ReadOnlySpan<int> Entries => _entries;

    /// <summary>Direct array for the CPU core's hot path. Do not write through it.</summary>
    internal int[] RawEntries => _entries;

    /// <summary>
    /// Counts the changes that take away or move a mapping: a present entry remapped, unmapped or write-protected.
    /// A CPU that caches translations (the translator's TLB) drops them when it moves; a mapping added or made writable
    /// does not move it, as nothing could have been cached for what it now allows.
    /// </summary>
    public int Generation { get; private set; }

    public void Map(ulong guestPageNumber, int hostFrameNumber, bool writable)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(guestPageNumber, (ulong)_entries.Length);
        ArgumentOutOfRangeException.ThrowIfNegative(hostFrameNumber);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(hostFrameNumber, FrameMask);
        ref int e = ref _entries[guestPageNumber];
        bool moved = (e & FrameMask) != hostFrameNumber;
        bool protectedNow = (e & WritableBit) != 0 && !writable;
        if (e != NotPresent && (moved || protectedNow))
        {
            Generation++;
        }
        e = hostFrameNumber | (writable ? WritableBit : 0);
    }

    public void Unmap(ulong guestPageNumber)
    {
        if (guestPageNumber < (ulong)_entries.Length && _entries[guestPageNumber] != NotPresent)
        {
            _entries[guestPageNumber] = NotPresent;
            Generation++;
        }
    }

    public void SetWritable(ulong guestPageNumber, bool writable)
    {
        ref int e = ref _entries[guestPageNumber];
        if (e != NotPresent)
        {
            if (!writable && (e & WritableBit) != 0)
            {
                Generation++;
            }
            e = writable ? e | WritableBit : e & ~WritableBit;
        }
    }

    /// <summary>Translates a guest-physical address. False when the page is absent or, for a write, write-protected.</summary>
    public bool TryTranslate(ulong guestPhysicalAddress, bool write, out long hostPhysicalAddress)
    {
        ulong page = guestPhysicalAddress >> HostPhysicalMemory.FrameShift;
        if (page >= (ulong)_entries.Length || _entries[page] == NotPresent || (write && (_entries[page] & WritableBit) == 0))
        {
            hostPhysicalAddress = 0;
            return false;
        }

        hostPhysicalAddress = ((long)(_entries[page] & FrameMask) << HostPhysicalMemory.FrameShift)
            | (long)(guestPhysicalAddress & (HostPhysicalMemory.FrameSize - 1));
        return true;
    }
}
