using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The translator's own TLB: for a linear page, the host offset of its first byte, with one tag for reads and one for
/// writes, so that a block's memory access takes two loads and a comparison (inline IL, BlockCompiler.Translate)
/// instead of a call to <see cref="JitHost"/>. QEMU's softmmu TLB keeps the same addend per entry.
/// </summary>
/// <remarks>
/// An entry is filled only by <see cref="JitHost"/>, with what it has just checked, so it never allows more than
/// JitHost would. It must then be dropped whenever what JitHost checked may have changed:
/// <list type="bullet">
/// <item>the guest TLB entry it came from (same index): refilled, invalidated (INVLPG) or flushed, including every
/// paging-mode change, which flushes the TLB (System/X86Core.Paging.cs calls <see cref="FastTlbDrop"/> and
/// <see cref="FastTlbFlush"/>);</item>
/// <item>the rights an access needs (CPL, CR4.SMAP with EFLAGS.AC): <see cref="UpdateAccessRights"/> flushes when they
/// change;</item>
/// <item>the second-level table (a present entry remapped, unmapped or write-protected, dirty logging included), and
/// cached code appearing on a page (writes to it must leave the block): both are counted
/// (<see cref="Memory.SecondLevelPageTable.Generation"/>, <see cref="JitCache.CodeEpoch"/>), and
/// <see cref="RunBlocks"/> flushes on entry when either count moved. Neither can change while blocks run.</item>
/// </list>
/// Segments are checked by the block itself: only a flat ES, SS, DS, FS or GS takes the fast path (the flat mask
/// cannot change inside a block), so the tags are linear addresses.
/// </remarks>
public sealed unsafe partial class X86Core
{
    /// <summary>One entry: the tags (the linear page | 1, or 0) for reads and for writes, and the page's host offset.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct FastTlbEntry
    {
        public uint ReadTag;
        public uint WriteTag;
        public long Host;
    }

    /// <summary>Entry i at byte offset i × 16 (BlockCompiler computes it from the address with one shift and a mask).</summary>
    internal const int FastTlbEntryShift = 4;

    // Made when the core first runs a block (16 KiB, which a guest that never runs hot code, an idle one, does not
    // pay), and pinned, so that blocks address it through a pointer without bounds checks (as guest RAM).
    private FastTlbEntry[]? _fastTlb;
    internal FastTlbEntry* _fastTlbBase;
    // The code epoch + the second-level table's generation the entries were filled under.
    private int _fastTlbEpoch;

    /// <summary>Drops every entry of the translator's TLB.</summary>
    private void FastTlbFlush()
    {
        if (_fastTlb is not null)
        {
            Array.Clear(_fastTlb);
        }
    }

    /// <summary>Drops the entry at <paramref name="index"/>, the one the guest TLB's entry there feeds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastTlbDrop(int index)
    {
        if (_fastTlb is not null)
        {
            _fastTlb[index] = default;
        }
    }

    /// <summary>Drops the entry the guest TLB entry for <paramref name="linear"/> feeds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastTlbDrop(uint linear) => FastTlbDrop((int)((linear >> PageShift) & (TlbEntries - 1)));

    /// <summary>
    /// Before blocks run: makes the translator's TLB at the first time, and flushes it when the second-level table or
    /// the set of code pages changed since its entries were filled.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastTlbCheckEpoch()
    {
        int epoch = _jitCache.CodeEpoch + Slat.Generation;
        if (_fastTlb is null)
        {
            _fastTlb = GC.AllocateArray<FastTlbEntry>(TlbEntries, pinned: true);
            _fastTlbBase = (FastTlbEntry*)Unsafe.AsPointer(ref _fastTlb[0]);
            _fastTlbEpoch = epoch;
        }
        else if (epoch != _fastTlbEpoch)
        {
            _fastTlbEpoch = epoch;
            FastTlbFlush();
        }
    }

    /// <summary>
    /// Records an access JitHost has just allowed: a flat segment's <paramref name="linear"/> page at host offset
    /// <paramref name="host"/>, for reads, or for writes when the page holds no cached code at all (a page with code
    /// keeps taking JitHost, which checks the bytes written).
    /// </summary>
    private void FastTlbFill(uint linear, long host, bool write, ulong guestPage)
    {
        ref FastTlbEntry entry = ref _fastTlb![(linear >> PageShift) & (TlbEntries - 1)];
        uint tag = (linear & ~PageOffsetMask) | 1;
        long hostPage = host & ~(long)PageOffsetMask;
        if ((entry.ReadTag != tag && entry.WriteTag != tag) || entry.Host != hostPage)
        {
            entry = default;
            entry.Host = hostPage;
        }
        if (!write)
        {
            entry.ReadTag = tag;
        }
        else if (_codePages[guestPage] is null)
        {
            entry.WriteTag = tag;
        }
    }
}
