using System.Diagnostics;
using System.Runtime.CompilerServices;
using HybridVmm.Hardware.Memory;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>Which tier runs guest code: the interpreter alone, or the interpreter with the IL translator for hot code.</summary>
public enum ExecutionTier
{
    /// <summary>Every instruction through the interpreter (Interp/).</summary>
    Interpreter,

    /// <summary>Hot straight-line code compiled to IL blocks (Jit/), everything else through the interpreter.</summary>
    Jit,
}

/// <summary>
/// What the translator did: blocks compiled, entered and left before their last instruction (a superblock's side exit,
/// or a bail-out to the interpreter), and the time spent compiling (IL and RyuJIT, on whichever thread compiled).
/// </summary>
public readonly record struct JitStatistics(long BlocksCompiled, long BlocksRefused, long BlockEntries, long BlockExitsEarly,
    long InstructionsInBlocks, long CompileTicks, long CacheFlushes)
{
    /// <summary>Wall-clock time spent compiling.</summary>
    public TimeSpan CompileTime => TimeSpan.FromSeconds((double)CompileTicks / Stopwatch.Frequency);
}

/// <summary>
/// The translator's runtime side (tier 1): when a cached instruction has started <see cref="JitHotThreshold"/> times, a
/// block beginning there is compiled to IL (Jit/BlockCompiler.cs) and entered from then on. A block runs only where
/// it cannot change the outcome: at an instruction boundary with no event to service (or only interrupts that IF
/// holds off), TF and RF clear, no instruction
/// breakpoint, a 32-bit stack, and the whole block within the run's budget, so virtual time stays the count of
/// retired instructions. Inside a block every memory access takes <see cref="JitHost"/>: guest RAM the TLB and the
/// second-level table already allow, in one page, not holding cached code. Anything else (a TLB miss, a fault, MMIO,
/// a page-crossing access, a write to code, a segment limit) leaves the block before the instruction has changed
/// anything, and the interpreter executes it. So the translator never raises a fault, an exit or an A/D update of its
/// own, and results do not depend on which tier ran.
/// </summary>
public sealed partial class X86Core
{
    /// <summary>
    /// The default of <see cref="JitHotThreshold"/>. A block costs about 100-300 µs to compile (Reflection.Emit and
    /// RyuJIT) and saves tens of nanoseconds a run, so it pays off after a few thousand runs: compiling at 32 made a
    /// Linux boot slower than at 1000 (docs/performance.md).
    /// </summary>
    public const int DefaultJitHotThreshold = 1000;

    private int _jitHotThreshold = DefaultJitHotThreshold;

    /// <summary>The tier new cores use (the CLI's <c>--tier</c>).</summary>
    public static ExecutionTier DefaultTier { get; set; } = ExecutionTier.Jit;

    /// <summary>Whether new cores compile blocks on the background compiler thread (<see cref="CompileInBackground"/>).</summary>
    public static bool DefaultCompileInBackground { get; set; } = true;

    /// <summary>
    /// Compile hot blocks on a background thread while the interpreter goes on (true), or on this core's thread before
    /// running on (false: what the differential tests use, so that a block runs the moment it is hot). Either way the
    /// guest sees the same machine: a block does exactly what the interpreter would, so only the speed depends on when
    /// a compile finishes.
    /// </summary>
    public bool CompileInBackground { get; set; } = DefaultCompileInBackground;

    private bool _jit = DefaultTier == ExecutionTier.Jit;
    private readonly JitCache _jitCache;
    private long _blockEntries, _blockExitsEarly, _instructionsInBlocks;

    /// <summary>The tier this core runs guest code with.</summary>
    public ExecutionTier Tier
    {
        get => _jit ? ExecutionTier.Jit : ExecutionTier.Interpreter;
        set => _jit = value == ExecutionTier.Jit;
    }

    /// <summary>
    /// Starts of a cached instruction before a block beginning there is compiled (1: at its first start; the
    /// differential tests use it to run every instruction through the translator).
    /// </summary>
    public int JitHotThreshold
    {
        get => _jitHotThreshold;
        set => _jitHotThreshold = Math.Clamp(value, 1, ushort.MaxValue);
    }

    /// <summary>The translator's counters (the compile counts are shared by the cores of one partition).</summary>
    public JitStatistics JitStatistics => new(_jitCache.BlocksCompiled, _jitCache.BlocksRefused, _blockEntries, _blockExitsEarly,
        _instructionsInBlocks, _jitCache.CompileTicks, _jitCache.Flushes);

    /// <summary>The bound on translated code, shared by the cores of one partition (estimated bytes of host code).</summary>
    public long TranslationCacheLimit { get => _jitCache.Limit; set => _jitCache.Limit = value; }

    /// <summary>
    /// Runs the block for the cached instruction in <paramref name="slot"/> of <paramref name="page"/> when there is one
    /// and it may run now, compiling it once the instruction is hot; then, while each block ends where another compiled
    /// block starts (on this page, or on one <see cref="ChainPage"/> finds) and the budget allows, that one (blocks
    /// chained through this loop, without the run loop's per-instruction work in between). Returns the instructions retired, already added to
    /// <see cref="InstructionsRetired"/> (0: the interpreter runs the instruction); EIP is on the next instruction to run.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int TryRunBlock(CodePage page, int slot, long budgetLeft)
    {
        JitBlock? block = page.Blocks[slot];
        if (block is null)
        {
            if (++page.Heat[slot] < _jitHotThreshold)
            {
                return 0;
            }
            block = CompileBlock(page, slot);
        }
        if (block.Count == 0 || block.Count > budgetLeft || (_eventCheck && !EventsHeldOff) || _stack16 || _instructionBreakpoints != 0
            || (_ctx.Eflags & (uint)EFlags.TF) != 0)
        {
            return 0;
        }
        return RunBlocks(page, block, budgetLeft);
    }

    // Lazy flags between chained blocks: a block that leaves with a flag-writing operation pending stores it here (1-5 as
    // JitFlags numbers them, the size in bits 8-15, the operands) instead of computing the flags; the next block takes
    // them if it reads flags first (JitTakeLazyFlags), or overwrites them. Zero outside RunBlocks: it computes them
    // into EFLAGS before it returns.
    internal int _lazyOp;
#pragma warning disable CS0649 // written by the blocks' IL only
    internal uint _lazyA, _lazyB;
#pragma warning restore CS0649

    /// <summary>EFLAGS with the status flags a previous block left pending (a block that reads flags first calls it on entry).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal uint JitTakeLazyFlags(uint flags)
    {
        if (_lazyOp == 0)
        {
            return flags;
        }
        flags = JitFlags(flags, _lazyOp & 0xFF, _lazyA, _lazyB, _lazyOp >> 8);
        _lazyOp = 0;
        return flags;
    }

    /// <summary>Runs <paramref name="block"/> and the blocks it chains to (see <see cref="TryRunBlock"/>), then makes EFLAGS whole.</summary>
    private int RunBlocks(CodePage page, JitBlock block, long budgetLeft)
    {
        FastTlbCheckEpoch();
        int total = RunChain(page, block, budgetLeft);
        if (_lazyOp != 0)
        {
            _ctx.Eflags = JitTakeLazyFlags(_ctx.Eflags);
        }
        return total;
    }

    private int RunChain(CodePage page, JitBlock block, long budgetLeft)
    {
        int total = 0;
        while (true)
        {
            // RDTSC in a block reads InstructionsRetired: it is brought up to date after each block.
            int retired = block.Code!(this, block.Instructions, (int)Math.Min(budgetLeft - total, int.MaxValue));
            InstructionsRetired += retired;
            total += retired;
            _blockEntries++;
            _instructionsInBlocks += retired;
            if (retired < block.Count)
            {
                _blockExitsEarly++;
            }
            if (retired == 0 || _eventCheck || (_ctx.Eflags & (uint)EFlags.TF) != 0)
            {
                // Left before its first instruction (the interpreter takes it), something to service, or POPFD set TF
                // (the run loop single-steps what follows).
                return total;
            }
            uint linear = _ctx.Eip + _csBase;
            if ((linear & ~PageOffsetMask) != page.LinearBase)
            {
                CodePage? other = ChainPage(linear);
                if (other is null)
                {
                    return total; // the run loop looks the page up with every rule
                }
                page = other;
            }
            int index = page.Index[linear & PageOffsetMask];
            if (index == 0)
            {
                return total;
            }
            JitBlock? next = page.Blocks[index - 1];
            if (next is null || next.Count == 0 || next.Count > budgetLeft - total)
            {
                return total; // not hot yet (the run loop counts it), not compiled, or past the budget
            }
            block = next;
        }
    }

    /// <summary>
    /// The code page of <paramref name="linear"/> when a chain of blocks may go on there without the run loop: the
    /// guest TLB holds the page with the right to fetch (paging on), the second-level table maps it, and its decoded
    /// code is for this frame, linear page, CS base and code size. Otherwise null: the run loop looks the page up with
    /// every rule (GetCodePage: a page walk, a fetch fault, an intercept, decoding afresh). Changes nothing.
    /// </summary>
    private CodePage? ChainPage(uint linear)
    {
        ulong physical = linear;
        if (_pagingEnabled)
        {
            ref TlbEntry entry = ref _tlb[(linear >> PageShift) & (TlbEntries - 1)];
            if (entry.Tag != ((linear & ~PageOffsetMask) | TlbValid) || (entry.Rights & _fetchRequired) != _fetchRequired)
            {
                return null;
            }
            physical = entry.PageBase;
        }
        ulong guestPage = physical >> PageShift;
        int[] slat = _slatEntries;
        if (guestPage >= (ulong)slat.Length || slat[guestPage] < 0)
        {
            return null;
        }
        CodePage? page = _codePages[guestPage];
        return page is not null && Decodes(page, slat[guestPage] & SecondLevelPageTable.FrameMask, linear & ~PageOffsetMask) ? page : null;
    }

    /// <summary>
    /// The event check is armed, but nothing can be taken before some instruction sets IF, and no block holds such an
    /// instruction: a maskable interrupt or an interrupt-window request waiting while IF is clear (a kernel's
    /// interrupts-off section, a decompressor), with no exception, injection, NMI, STI shadow, breakpoint, RF or MMIO
    /// replay waiting as well.
    /// </summary>
    private bool EventsHeldOff => (_ctx.Eflags & ((uint)EFlags.IF | RfFlag)) == 0 && !_stiShadow && !_queuedException && !_injectedPending
        && !(_nmiPending && !_nmiBlocked) && _instructionBreakpoints == 0 && _replayCount == 0;

    /// <summary>
    /// The block for a start that just became hot: compiled now, or <see cref="JitBlock.Pending"/> while the background
    /// compiler works on it (the page takes the result if its code has not changed since), or Refused.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private JitBlock CompileBlock(CodePage page, int slot)
    {
        Instruction[]? code = BlockCompiler.Form(page, slot);
        if (code is null)
        {
            _jitCache.Refused();
            return page.Blocks[slot] = JitBlock.Refused;
        }
        _jitCache.Reserve(page, code.Length);
        if (CompileInBackground && BackgroundCompiler.HasRoom)
        {
            // Marked before it is queued: the compiler thread installs a result only over the Pending mark.
            page.Queued(slot, code);
            BackgroundCompiler.Queue(page, slot, code, _jitCache);
            return JitBlock.Pending;
        }
        long start = Stopwatch.GetTimestamp();
        JitBlock block = BlockCompiler.Compile(code);
        _jitCache.Compiled(Stopwatch.GetTimestamp() - start);
        return page.Blocks[slot] = block;
    }

    /// <summary>
    /// One thread per process that compiles blocks queued by every core (RyuJIT takes a few hundred microseconds a
    /// block, which a core would otherwise spend instead of running its guest). A result goes into its page only if
    /// the page's blocks were not dropped meanwhile (<see cref="CodePage.Install"/>).
    /// </summary>
    private static class BackgroundCompiler
    {
        /// <summary>Queued blocks beyond which a core compiles its block itself (the compiler thread is behind).</summary>
        private const int MaxQueued = 1024;

        private static readonly System.Collections.Concurrent.BlockingCollection<(CodePage Page, int Slot, int Generation, Instruction[] Code, JitCache Cache)> Work = new();
        private static readonly Lock StartLock = new();
        private static Thread? _thread;

        public static bool HasRoom => Work.Count < MaxQueued;

        public static void Queue(CodePage page, int slot, Instruction[] code, JitCache cache)
        {
            if (_thread is null)
            {
                lock (StartLock)
                {
                    if (_thread is null)
                    {
                        var thread = new Thread(CompileQueued) { IsBackground = true, Name = "hybridvmm block compiler", Priority = ThreadPriority.BelowNormal };
                        thread.Start();
                        _thread = thread;
                    }
                }
            }
            Work.Add((page, slot, page.Generation, code, cache));
        }

        private static void CompileQueued()
        {
            foreach ((CodePage page, int slot, int generation, Instruction[] code, JitCache cache) in Work.GetConsumingEnumerable())
            {
                long start = Stopwatch.GetTimestamp();
                JitBlock block = BlockCompiler.Compile(code);
                cache.Compiled(Stopwatch.GetTimestamp() - start);
                page.Install(slot, generation, block, code);
            }
        }
    }

    /// <summary>
    /// The host offset of a memory access the translator may make directly, or -1 to leave the block: the segment is
    /// flat or the access lies inside its limit, the access stays in one page, the TLB holds the page with the rights
    /// the access needs (paging on), the second-level table maps it (writable, for a write), and a write touches no
    /// cached code. Never faults and changes nothing.
    /// </summary>
    // Not inlined into blocks: RyuJIT spends tens of microseconds on each inlined call site when it compiles a block.
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal long JitHost(uint offset, int segment, int size, bool write)
    {
        uint linear = offset;
        // CS is never taken as flat here: an access through it must be a read of a readable code segment (JitSegment
        // refuses code segments, so the interpreter decides).
        bool flat = ((_nonFlatSegments | (1 << (int)Sreg.Cs)) & (1 << segment)) == 0;
        if (!flat && !JitSegment(segment, offset, size, write, out linear))
        {
            return -1;
        }
        if ((linear & PageOffsetMask) > HostPhysicalMemory.FrameSize - (uint)size)
        {
            return -1;
        }
        uint physical = linear;
        ulong page = linear >> PageShift;
        if (_pagingEnabled)
        {
            ref TlbEntry entry = ref _tlb[(linear >> PageShift) & (TlbEntries - 1)];
            byte required = write ? _writeRequired : _readRequired;
            if (entry.Tag != ((linear & ~PageOffsetMask) | TlbValid) || (entry.Rights & required) != required)
            {
                return -1;
            }
            physical = (uint)entry.PageBase | (linear & PageOffsetMask);
            page = entry.PageBase >> PageShift;
        }
        int[] entries = _slatEntries;
        if (page >= (uint)entries.Length)
        {
            return -1;
        }
        int slat = entries[page];
        if (slat < 0)
        {
            return -1;
        }
        if (write)
        {
            if ((slat & SecondLevelPageTable.WritableBit) == 0)
            {
                return -1;
            }
            CodePage? code = _codePages[page];
            if (code is not null && code.Count != 0 && code.Overlaps(physical & PageOffsetMask, size))
            {
                return -1;
            }
        }
        long host = ((long)(slat & SecondLevelPageTable.FrameMask) << PageShift) | (physical & PageOffsetMask);
        if (flat)
        {
            FastTlbFill(linear, host, write, page);
        }
        return host;
    }

    /// <summary>A segmented access the translator may make: an expand-up data segment (writable for a write), inside its limit.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool JitSegment(int segment, uint offset, int size, bool write, out uint linear)
    {
        ref SegmentRegister s = ref _ctx.Segments[segment];
        linear = s.Base + offset;
        if ((s.Attributes & (AttrPresent | AttrCode | AttrExpandDown)) != AttrPresent || (write && (s.Attributes & AttrWritable) == 0))
        {
            return false;
        }
        uint last = offset + (uint)(size - 1);
        return last >= offset && last <= s.Limit;
    }

    /// <summary>The time-stamp counter <paramref name="retiredInBlock"/> instructions after the block's entry (RDTSC in a block).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal ulong JitTimeStamp(int retiredInBlock) => TimeStampCounter + (ulong)retiredInBlock;

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal uint JitTscAux() => _ctx.TscAux;

    /// <summary>Runs one instruction of a block through the interpreter (the block has stored its registers and checked its memory operand).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void JitInterpret(ref Instruction ins)
    {
        _ctx.Eip = ins.NextIP32;
        Execute(ref ins);
    }

    /// <summary>
    /// <paramref name="flags"/> with the status flags of a block's pending operation (1 ADD, 2 SUB/CMP/NEG, 3 a logic
    /// operation on result <paramref name="a"/>, 4 INC and 5 DEC of <paramref name="a"/>, which keep CF, 6 a shift or
    /// IMUL with result <paramref name="a"/> and its CF and OF already in <paramref name="b"/>), as
    /// Interp/X86Core.Flags.cs computes them for both tiers. Called, not inlined, for the reason JitHost gives; most
    /// conditions in a block do not need it (BlockCompiler.EmitCondition).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static uint JitFlags(uint flags, int pending, uint a, uint b, int size)
    {
        uint status = pending switch
        {
            1 => AddStatus(a, b, 0, size, out _),
            2 => SubStatus(a, b, 0, size, out _),
            3 => Szp(a, size),
            4 => (AddStatus(a, 1, 0, size, out _) & ~CF) | (flags & CF),
            5 => (SubStatus(a, 1, 0, size, out _) & ~CF) | (flags & CF),
            _ => Szp(a, size) | (b & (CF | OF)),
        };
        return (flags & ~StatusFlags) | status;
    }

    /// <summary>
    /// A shift or rotate in a block (<see cref="ShiftResult"/>): the result in the low half, the flags in the high half.
    /// <paramref name="flags"/> must be whole unless the count is a non-zero immediate of SHL, SHR or SAR, which
    /// write every status flag.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static ulong JitShift(int op, uint a, uint count, int size, uint flags)
    {
        uint r = ShiftResult((Operation)op, a, (int)(count & 0x1f), size, ref flags);
        return r | (ulong)flags << 32;
    }

    /// <summary>IMUL's two- and three-operand forms in a block (<see cref="TruncatedImul"/>), packed as JitShift packs.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static ulong JitImul(uint a, uint b, int size, uint flags)
    {
        uint r = TruncatedImul(a, b, size, ref flags);
        return r | (ulong)flags << 32;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static uint JitAddCarry(uint a, uint b, uint carry, int size, out uint r) => AddStatus(a, b, carry, size, out r);

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static uint JitSubBorrow(uint a, uint b, uint borrow, int size, out uint r) => SubStatus(a, b, borrow, size, out r);

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static bool JitCondition(int cc, uint flags) => Condition((ConditionCode)cc, flags);
}

/// <summary>
/// The translated code of one partition: every page with blocks, and a bound on their size. Past the bound everything
/// is dropped at once (as QEMU flushes its translation buffer), so a guest that generates code forever stays bounded;
/// the blocks are DynamicMethods, which the runtime frees once nothing refers to them.
/// </summary>
/// <remarks>
/// Each live DynamicMethod costs the runtime's finalizer thread some work after every GC (its resolver is visited
/// again), so thousands of blocks are not free even when they do not run: at a hot threshold of 32 a Linux boot spent
/// more time there than in the guest. One collectible AssemblyBuilder per few hundred blocks avoids that, but compiling
/// a block as a type cost five times as much and the boot was 15 % slower at the default threshold
/// (docs/performance.md); the bound here also bounds that work.
/// </remarks>
internal sealed class JitCache
{
    /// <summary>Estimated host bytes per translated guest instruction (IL, its machine code and the block's copy of it).</summary>
    public const int BytesPerInstruction = 512;

    private readonly List<CodePage> _pages = new();

    private long _blocksCompiled, _compileTicks;

    public long Limit { get; set; } = 64L << 20;
    public long Bytes { get; private set; }
    public long BlocksCompiled => Interlocked.Read(ref _blocksCompiled);
    public long BlocksRefused { get; private set; }
    public long CompileTicks => Interlocked.Read(ref _compileTicks);
    public long Flushes { get; private set; }

    /// <summary>Counts the guest pages that became code pages (the translator's TLB drops its write entries, Jit/X86Core.JitTlb.cs).</summary>
    public int CodeEpoch;

    public void Refused() => BlocksRefused++;

    /// <summary>A block compiled, on whichever thread compiled it.</summary>
    public void Compiled(long ticks)
    {
        Interlocked.Add(ref _compileTicks, ticks);
        Interlocked.Increment(ref _blocksCompiled);
    }

    /// <summary>Accounts for a block of <paramref name="instructions"/> about to be compiled for <paramref name="page"/>, flushing first past the bound.</summary>
    public void Reserve(CodePage page, int instructions)
    {
        long bytes = 64 + (long)instructions * BytesPerInstruction;
        if (Bytes + bytes > Limit)
        {
            Flush();
        }
        Bytes += bytes;
        if (!page.HasBlocks)
        {
            page.HasBlocks = true;
            _pages.Add(page);
        }
    }

    private void Flush()
    {
        foreach (CodePage page in _pages)
        {
            page.DropBlocks();
            page.HasBlocks = false; // listed again with its next block, so that the next flush finds it too
        }
        _pages.Clear();
        Bytes = 0;
        Flushes++;
    }
}
