using System.Runtime.CompilerServices;
using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Guest memory access: every linear address goes through the guest's page tables when paging is on
/// (System/X86Core.Paging.cs) and then through the second-level table. A refused access records a <see cref="CpuExitReason.MemoryIntercept"/> exit and
/// sets <see cref="_faulted"/> (Exits/X86Core.Exits.cs); later accesses of the same instruction then do nothing,
/// and the run loop rolls the instruction back. Accesses that cross a page translate both pages before touching
/// either.
/// </summary>
public sealed unsafe partial class X86Core
{
    private const int PageShift = HostPhysicalMemory.FrameShift;
    private const uint PageOffsetMask = HostPhysicalMemory.FrameSize - 1;

    private readonly byte* _ram;
    private readonly int[] _slatEntries;

    /// <summary>
    /// Translates one page part of an access: linear to guest-physical through the guest's page tables when paging is
    /// on (System/X86Core.Paging.cs), then guest-physical to host through the second-level table. -1 when the access
    /// faulted (#PF) or the second-level table refuses it: either an intercept is recorded (<see cref="_faulted"/>),
    /// or the access was already answered by the hypervisor and is replayed (a read's value is then in
    /// <see cref="_mmioValue"/>, a write counts as done). <paramref name="writeValue"/> holds the bytes a write stores
    /// in this part, for the exit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long TranslateOrFault(uint address, bool write, int size, uint writeValue = 0)
    {
        ulong physical = address;
        if (_pagingEnabled)
        {
            long translated = LinearToPhysical(address, write);
            if (translated < 0) return -1;
            physical = (ulong)translated;
        }
        return PhysicalToHost(physical, write, size, writeValue);
    }

    /// <summary>The second-level table's half of a translation: guest-physical to host, or a memory intercept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long PhysicalToHost(ulong guestPhysical, bool write, int size, uint writeValue)
    {
        ulong page = guestPhysical >> PageShift;
        int[] entries = _slatEntries;
        if (page < (ulong)entries.Length)
        {
            int entry = entries[page];
            if (entry >= 0 && (!write || (entry & SecondLevelPageTable.WritableBit) != 0))
            {
                return ((long)(entry & SecondLevelPageTable.FrameMask) << PageShift) | (long)((uint)guestPhysical & PageOffsetMask);
            }
        }
        return MemoryIntercept(guestPhysical, write, size, writeValue);
    }

    // A refused read returns _mmioValue: the replayed value, or 0 when the access exits (nothing then uses it).

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint Read8(uint address)
    {
        long host = TranslateOrFault(address, false, 1);
        return host < 0 ? _mmioValue : _ram[host];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint Read16(uint address)
    {
        if ((address & PageOffsetMask) <= PageOffsetMask - 1)
        {
            long host = TranslateOrFault(address, false, 2);
            return host < 0 ? _mmioValue : Unsafe.ReadUnaligned<ushort>(ref _ram[host]);
        }
        return ReadSplit(address, 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint Read32(uint address)
    {
        if ((address & PageOffsetMask) <= PageOffsetMask - 3)
        {
            long host = TranslateOrFault(address, false, 4);
            return host < 0 ? _mmioValue : Unsafe.ReadUnaligned<uint>(ref _ram[host]);
        }
        return ReadSplit(address, 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint ReadMem(uint address, int size) => size switch
    {
        1 => Read8(address),
        2 => Read16(address),
        _ => Read32(address),
    };

    /// <summary>
    /// A little-endian read whose bytes lie in two pages (addresses wrap at 4 GiB). Each page part is its own
    /// access: RAM on one side and MMIO on the other, or MMIO on both, each exits (and is replayed) separately.
    /// </summary>
    private uint ReadSplit(uint address, int size)
    {
        int first = (int)(HostPhysicalMemory.FrameSize - (address & PageOffsetMask));
        uint second = address + (uint)first;
        long h1 = TranslateOrFault(address, false, first);
        if (_faulted) return 0;
        uint low = h1 >= 0 ? ReadBytes(h1, first) : _mmioValue;
        long h2 = TranslateOrFault(second, false, size - first);
        if (_faulted) return 0;
        uint high = h2 >= 0 ? ReadBytes(h2, size - first) : _mmioValue;
        return low | (high << (8 * first));
    }

    private uint ReadBytes(long host, int count)
    {
        uint value = 0;
        for (int i = 0; i < count; i++)
        {
            value |= (uint)_ram[host + i] << (8 * i);
        }
        return value;
    }

    /// <summary>A write's host address; -1 when refused (#PF or intercept recorded) or already done by the hypervisor (replayed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long TranslateForWrite(uint address, int size, uint value)
    {
        ulong physical = address;
        if (_pagingEnabled)
        {
            long translated = LinearToPhysical(address, write: true);
            if (translated < 0) return -1;
            physical = (ulong)translated;
        }
        long host = PhysicalToHost(physical, true, size, value);
        if (host < 0 || _faulted)
        {
            return -1;
        }
        // The decode cache is keyed by guest-physical page, so a write through any mapping invalidates the code.
        CodePage? code = _codePages[physical >> PageShift];
        if (code is not null && code.Count != 0 && code.Overlaps(address & PageOffsetMask, size))
        {
            code.Clear(); // self-modifying code: re-decode from the new bytes
        }
        return host;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Write8(uint address, uint value)
    {
        long host = TranslateForWrite(address, 1, value);
        if (host >= 0) _ram[host] = (byte)value;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Write16(uint address, uint value)
    {
        if ((address & PageOffsetMask) <= PageOffsetMask - 1)
        {
            long host = TranslateForWrite(address, 2, value);
            if (host >= 0) Unsafe.WriteUnaligned(ref _ram[host], (ushort)value);
            return;
        }
        WriteSplit(address, value, 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Write32(uint address, uint value)
    {
        if ((address & PageOffsetMask) <= PageOffsetMask - 3)
        {
            long host = TranslateForWrite(address, 4, value);
            if (host >= 0) Unsafe.WriteUnaligned(ref _ram[host], value);
            return;
        }
        WriteSplit(address, value, 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteMem(uint address, int size, uint value)
    {
        switch (size)
        {
            case 1: Write8(address, value); break;
            case 2: Write16(address, value); break;
            default: Write32(address, value); break;
        }
    }

    private void WriteSplit(uint address, uint value, int size)
    {
        int first = (int)(HostPhysicalMemory.FrameSize - (address & PageOffsetMask));
        uint second = address + (uint)first;
        // Check both pages before writing any byte, so a refused second page leaves memory untouched.
        // A part the hypervisor already wrote (MMIO replay) translates to -1 without a fault and is skipped.
        long h1 = TranslateForWrite(address, first, value & SizeMask(first));
        if (_faulted) return;
        long h2 = TranslateForWrite(second, size - first, value >> (8 * first));
        if (_faulted) return;
        for (int i = 0; i < size; i++)
        {
            byte b = (byte)(value >> (8 * i));
            if (i < first)
            {
                if (h1 >= 0) _ram[h1 + i] = b;
            }
            else if (h2 >= 0)
            {
                _ram[h2 + i - first] = b;
            }
        }
    }

    /// <summary>
    /// Checks that a write would be allowed, without writing (used before multi-write instructions: INS, PUSHA,
    /// SGDT/SIDT, CMPXCHG8B). A refused probe is a plain intercept that cannot be completed as MMIO: it carries no
    /// data, so the instruction can only re-execute once the table allows the write.
    /// </summary>
    private bool ProbeWrite(uint address, int size)
    {
        int first = (int)Math.Min(size, HostPhysicalMemory.FrameSize - (address & PageOffsetMask));
        if (!WriteAllowed(address, first)) return false;
        uint second = address + (uint)first;
        return first == size || WriteAllowed(second, size - first);
    }

    /// <summary>The probe of one page part: a #PF is raised as for the write itself; a refused guest-physical page is a probe intercept.</summary>
    private bool WriteAllowed(uint address, int size)
    {
        ulong physical = address;
        if (_pagingEnabled)
        {
            long translated = LinearToPhysical(address, write: true);
            if (translated < 0) return false;
            physical = (ulong)translated;
        }
        ulong page = physical >> PageShift;
        bool allowed = page < (ulong)_slatEntries.Length && _slatEntries[page] is int entry && entry >= 0
            && (entry & SecondLevelPageTable.WritableBit) != 0;
        return allowed || ProbeRefused(physical, size);
    }
}
