using System.Diagnostics;

namespace HybridVmm.Hypervisor.Scheduling;

/// <summary>
/// Wall-clock latency of port intercepts, from the moment the vCPU leaves the guest on an IN or OUT to the moment it
/// enters the guest again with the reply applied: the whole round trip guest → kernel → root worker → reply → resume.
/// Measured only when a benchmark sets <see cref="Scheduler.ExitLatency"/>; the wall clock never reaches a trace or
/// the guest. Keeps at most <see cref="Capacity"/> samples (the first ones).
/// </summary>
public sealed class ExitLatency
{
    public const int Capacity = 1 << 20;

    private readonly long[] _samples = new long[Capacity];
    private int _count;

    /// <summary>Round trips measured (at most <see cref="Capacity"/> are kept).</summary>
    public long Measured { get; private set; }

    internal void Record(long startTimestamp)
    {
        long elapsed = Stopwatch.GetTimestamp() - startTimestamp;
        Measured++;
        if (_count < Capacity)
        {
            _samples[_count++] = elapsed;
        }
    }

    /// <summary>The <paramref name="fraction"/> quantile (0.5 = median) of the kept samples, or null with none.</summary>
    public TimeSpan? Quantile(double fraction)
    {
        if (_count == 0)
        {
            return null;
        }

        long[] sorted = _samples[.._count];
        Array.Sort(sorted);
        int index = (int)Math.Min(_count - 1, Math.Floor(fraction * _count));
        return TimeSpan.FromSeconds(sorted[index] / (double)Stopwatch.Frequency);
    }
}
