using System.Runtime.CompilerServices;
using HybridVmm.Hardware.Memory;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Decoded instructions of one guest-physical page, created lazily the first time the page executes.
/// <see cref="Index"/> maps a page offset to 1 + the slot in <see cref="Instructions"/> (0 = not decoded),
/// so the run loop finds an instruction with two array loads. <see cref="Covered"/> marks the bytes that
/// cached instructions occupy: a write to one of them clears the page, while writes to data that merely
/// shares the page (globals next to code in a small kernel) leave the cache alone.
/// </summary>
internal sealed class CodePage
{
    public readonly ushort[] Index = new ushort[HostPhysicalMemory.FrameSize];
    public readonly ulong[] Covered = new ulong[HostPhysicalMemory.FrameSize / 64];
    public Instruction[] Instructions = new Instruction[64];
    public int Count;
    /// <summary>Per slot: the translated block starting at that instruction (Jit/), or null while it is not hot yet.</summary>
    public JitBlock?[] Blocks = new JitBlock?[64];
    /// <summary>Per slot: how often the interpreter started that instruction, until a block is compiled there.</summary>
    public ushort[] Heat = new ushort[64];
    /// <summary>The page is on its partition's list of pages with translated blocks (<see cref="JitCache"/>).</summary>
    public bool HasBlocks;
    /// <summary>
    /// Counts the times the blocks were dropped: a block the background compiler finishes for an older generation is
    /// thrown away (<see cref="Install"/>). Changed, like <see cref="Blocks"/>, only under the page's lock.
    /// </summary>
    public int Generation;
    /// <summary>The host frame the bytes were decoded from; a remapped page is decoded afresh.</summary>
    public int HostFrame;
    /// <summary>
    /// The linear page base the instructions were decoded at. Iced's instructions hold absolute addresses (the next
    /// EIP, branch targets), so the same guest-physical page run through another mapping is decoded afresh.
    /// </summary>
    public uint LinearBase;
    /// <summary>CS.base at decode time: the same linear page under another CS base has other EIPs.</summary>
    public uint CsBase;
    /// <summary>Decoded as 16-bit code (CS.D clear: real mode, or a 16-bit code segment): the same bytes mean other instructions.</summary>
    public bool Code16;

    public void Clear()
    {
        Array.Clear(Index);
        Array.Clear(Covered);
        DropBlocks();
        Count = 0;
        // The Instructions array is kept: the run loop may still hold a ref to the instruction that
        // performed the write, and the slot is only reused by the next decode.
    }

    /// <summary>Drops the translated blocks and the heat counts: the code changed, or the translation cache was flushed.</summary>
    public void DropBlocks()
    {
        lock (this)
        {
            Array.Clear(Blocks, 0, Count);
            Array.Clear(Heat, 0, Count);
            Generation++;
        }
    }

    /// <summary>
    /// A block starting at <paramref name="slot"/> went to the background compiler: the start is
    /// <see cref="JitBlock.Pending"/>, and its other instructions <see cref="JitBlock.Covered"/>.
    /// </summary>
    public void Queued(int slot, Instruction[] code)
    {
        lock (this)
        {
            Blocks[slot] = JitBlock.Pending;
            MarkInterior(code, JitBlock.Covered, null);
        }
    }

    /// <summary>Puts a block compiled in the background into its slot, unless the page's blocks were dropped since it was queued.</summary>
    public void Install(int slot, int generation, JitBlock block, Instruction[] code)
    {
        lock (this)
        {
            if (generation == Generation && slot < Count && Blocks[slot] == JitBlock.Pending)
            {
                Blocks[slot] = block;
                MarkInterior(code, null, JitBlock.Covered);
            }
        }
    }

    /// <summary>Sets the slots of a block's instructions after its first to <paramref name="to"/> where they hold <paramref name="from"/>.</summary>
    private void MarkInterior(Instruction[] code, JitBlock? to, JitBlock? from)
    {
        for (int i = 1; i < code.Length; i++)
        {
            int slot = Index[(code[i].IP32 + CsBase) & (HostPhysicalMemory.FrameSize - 1)] - 1;
            if (slot >= 0 && Blocks[slot] == from)
            {
                Blocks[slot] = to;
            }
        }
    }

    public ref Instruction Add(uint offset, scoped in Instruction instruction)
    {
        if (Count == Instructions.Length)
        {
            lock (this)
            {
                Array.Resize(ref Instructions, Count * 2);
                Array.Resize(ref Blocks, Count * 2);
                Array.Resize(ref Heat, Count * 2);
            }
        }
        Instructions[Count] = instruction;
        Index[offset] = (ushort)(Count + 1);
        for (uint b = offset, end = offset + (uint)instruction.Length; b < end; b++)
        {
            Covered[b >> 6] |= 1UL << (int)(b & 63);
        }
        return ref Instructions[Count++];
    }

    /// <summary>True when any byte of [offset, offset+length) belongs to a cached instruction (length ≤ 8, within the page).</summary>
    public bool Overlaps(uint offset, int length)
    {
        uint last = offset + (uint)length - 1;
        ulong first = Covered[offset >> 6] >> (int)(offset & 63);
        if ((offset >> 6) == (last >> 6))
        {
            return (first & ((2UL << (int)(last - offset)) - 1)) != 0;
        }
        return first != 0 || (Covered[last >> 6] & ((2UL << (int)(last & 63)) - 1)) != 0;
    }
}

/// <summary>Feeds Iced's decoder from guest memory (paging, then the second-level table), stopping at a fault or a refused page.</summary>
internal sealed class GuestCodeReader(X86Core core) : CodeReader
{
    public uint Address;
    public bool Failed;

    public override int ReadByte()
    {
        if (Failed)
        {
            return -1;
        }
        int value = core.FetchCodeByte(Address);
        if (value < 0)
        {
            Failed = true;
            return -1;
        }
        Address++;
        return value;
    }
}

public sealed unsafe partial class X86Core
{
    private readonly CodePage?[] _codePages;
    private readonly GuestCodeReader _codeReader;
    private readonly Decoder _decoder;
    // The decoder for 16-bit code: real mode, and protected-mode code segments with D clear.
    private readonly Decoder _decoder16;
    // Holds an instruction that straddles two pages; such instructions are decoded on every execution.
    private Instruction _straddling;

    // The guest-physical address of the last code byte the second-level table refused.
    private ulong _fetchRefusedAt;

    /// <summary>One code byte at a linear address for the decoder; -1 after a #PF (recorded) or a refused guest-physical page.</summary>
    internal int FetchCodeByte(uint linear)
    {
        ulong physical = linear;
        if (_pagingEnabled)
        {
            long translated = FetchToPhysical(linear);
            if (translated < 0) return -1;
            physical = (ulong)translated;
        }
        ulong page = physical >> PageShift;
        if (page >= (ulong)_slatEntries.Length || _slatEntries[page] < 0)
        {
            _fetchRefusedAt = physical;
            return -1;
        }
        int frame = _slatEntries[page] & SecondLevelPageTable.FrameMask;
        return _ram[((long)frame << PageShift) | (long)(linear & PageOffsetMask)];
    }

    /// <summary>A code byte for diagnostics: no fault, no A/D update, no TLB fill.</summary>
    private int PeekCodeByte(uint linear)
    {
        if (TranslateLinearForInspection(linear) is not ulong physical) return -1;
        ulong page = physical >> PageShift;
        if (page >= (ulong)_slatEntries.Length || _slatEntries[page] < 0) return -1;
        return _ram[((long)(_slatEntries[page] & SecondLevelPageTable.FrameMask) << PageShift) | (long)(linear & PageOffsetMask)];
    }

    /// <summary>
    /// The code cache for the page holding the linear address <paramref name="linear"/>, keyed by its guest-physical
    /// page. Null when it cannot be fetched from: a #PF or a fetch intercept is then recorded in <see cref="_exit"/>.
    /// </summary>
    private CodePage? GetCodePage(uint linear)
    {
        ulong physical = linear;
        if (_pagingEnabled)
        {
            long translated = FetchToPhysical(linear);
            if (translated < 0) return null;
            physical = (ulong)translated;
        }
        ulong guestPage = physical >> PageShift;
        if (guestPage >= (ulong)_slatEntries.Length || _slatEntries[guestPage] < 0)
        {
            IntercepFetch(physical);
            return null;
        }
        int frame = _slatEntries[guestPage] & SecondLevelPageTable.FrameMask;
        uint linearBase = linear & ~PageOffsetMask;
        CodePage? page = _codePages[guestPage];
        if (page is null)
        {
            page = new CodePage { HostFrame = frame, LinearBase = linearBase, CsBase = _csBase, Code16 = _code16 };
            _codePages[guestPage] = page;
            _jitCache.CodeEpoch++; // the translator's TLB may allow writes to this page (Jit/X86Core.JitTlb.cs)
        }
        else if (!Decodes(page, frame, linearBase))
        {
            page.Clear();
            page.HostFrame = frame;
            page.LinearBase = linearBase;
            page.CsBase = _csBase;
            page.Code16 = _code16;
        }
        return page;
    }

    /// <summary>Whether <paramref name="page"/> holds the code of host frame <paramref name="frame"/> at linear page <paramref name="linearBase"/>, decoded under the current CS base and code size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Decodes(CodePage page, int frame, uint linearBase) =>
        page.HostFrame == frame && page.LinearBase == linearBase && page.CsBase == _csBase && page.Code16 == _code16;

    /// <summary>
    /// An instruction fetch stopped (GetCodePage returned null, or the decoder ran into a fault): a #PF goes through the
    /// IDT like any fault; false when the run loop must return <see cref="_exit"/>.
    /// </summary>
    private bool FetchFaulted()
    {
        _faulted = false;
        return _exit.Reason == CpuExitReason.Exception && DeliverException(_exit.Vector, _exit.ErrorCode);
    }

    private ref Instruction DecodeAt(CodePage page, uint eip, out bool fetchFault)
    {
        uint linear = eip + _csBase;
        _codeReader.Address = linear;
        _codeReader.Failed = false;
        Decoder decoder = _code16 ? _decoder16 : _decoder;
        decoder.IP = eip;
        decoder.Decode(out Instruction instruction);
        if (_codeReader.Failed && instruction.Code == Code.INVALID)
        {
            fetchFault = true;
            if (!_faulted)
            {
                IntercepFetch(_fetchRefusedAt); // a #PF, when that was the cause, is already in _exit
            }
            return ref _straddling;
        }
        fetchFault = false;
        uint offset = linear & PageOffsetMask;
        if (offset + (uint)instruction.Length > HostPhysicalMemory.FrameSize)
        {
            _straddling = instruction;
            return ref _straddling;
        }
        return ref page.Add(offset, instruction);
    }

    /// <summary>Drops cached decoded instructions for a guest-physical range written by something other than this core.</summary>
    public void InvalidateCode(ulong guestPhysicalAddress, int length)
    {
        if (length <= 0)
        {
            return;
        }
        // Also cover an instruction that starts on the previous page and straddles into the range:
        // straddling instructions are never cached, so only the pages of the range itself matter.
        ulong first = guestPhysicalAddress >> PageShift;
        ulong last = (guestPhysicalAddress + (ulong)length - 1) >> PageShift;
        for (ulong p = first; p <= last && p < (ulong)_codePages.Length; p++)
        {
            _codePages[p]?.Clear();
        }
    }
}
