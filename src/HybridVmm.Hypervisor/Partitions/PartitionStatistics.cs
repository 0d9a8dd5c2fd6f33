using System.Runtime.InteropServices;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>Counters for the summary table. Updated by the kernel's scheduler thread only.</summary>
public sealed class PartitionStatistics
{
    // Counted in a hash table, one look-up an exit (a sorted one cost a tree walk of string comparisons, twice, on every
    // exit); sorted by name only when read, for the tables and the API.
    private readonly Dictionary<string, long> _intercepts = new(StringComparer.Ordinal);
    private SortedDictionary<string, long>? _sorted;

    /// <summary>
    /// Every vCPU's retired instructions, read from the cores themselves. A count kept beside them lagged: an
    /// intercepted instruction (an OUT) retires when the root's reply is completed at the barrier, after the slice
    /// that raised it, so a VM stopped or checkpointed at that barrier reported one instruction fewer than it had run.
    /// </summary>
    public long InstructionsRetired => RetiredSource?.Invoke() ?? 0;

    internal Func<long>? RetiredSource { get; set; }

    /// <summary>What the translator (tier 1) did for this partition; read between runs, as the other counters are.</summary>
    public Hardware.Cpu.JitStatistics Translator => TranslatorSource?.Invoke() ?? default;

    internal Func<Hardware.Cpu.JitStatistics>? TranslatorSource { get; set; }

    /// <summary>Messages between this partition's vCPUs and the root (intercepts sent plus replies received).</summary>
    public long ChannelMessages { get; internal set; }

    /// <summary>Virtual clock ticks at start and stop; their difference is the partition's run time in virtual time.</summary>
    public long StartTicks { get; internal set; } = NotStarted;

    internal const long NotStarted = long.MinValue;

    public long StopTicks { get; internal set; } = -1;

    public long VirtualTicks(long now) => StartTicks == NotStarted ? 0 : (StopTicks >= 0 ? StopTicks : now) - StartTicks;

    /// <summary>Boundaries crossed serving intercepts, as the cost model counts them.</summary>
    public long Crossings { get; internal set; }

    /// <summary>Virtual ticks charged for serving intercepts.</summary>
    public long InterceptTicks { get; internal set; }

    /// <summary>The intercepts by kind, in ordinal order of the kind's name.</summary>
    public IReadOnlyDictionary<string, long> InterceptsByKind => _sorted ??= new SortedDictionary<string, long>(_intercepts, StringComparer.Ordinal);

    public long TotalIntercepts
    {
        get
        {
            long total = 0;
            foreach (long v in _intercepts.Values)
            {
                total += v;
            }

            return total;
        }
    }

    internal void SetIntercepts(string kind, long count)
    {
        _intercepts[kind] = count;
        _sorted = null;
    }

    internal void CountIntercept(string kind)
    {
        CollectionsMarshal.GetValueRefOrAddDefault(_intercepts, kind, out _)++;
        _sorted = null;
    }
}
