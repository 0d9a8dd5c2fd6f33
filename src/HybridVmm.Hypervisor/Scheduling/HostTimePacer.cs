using System.Diagnostics;

namespace HybridVmm.Hypervisor.Scheduling;

/// <summary>
/// Lets idle virtual time pass no faster than the host's clock, as QEMU's <c>-icount sleep=on</c> does: time the
/// guests spend halted, waiting for a device timer, is slept on the host instead of skipped. Only idle time is
/// paced. Virtual time runs slower than the host's while the guests compute (the interpreter is slower than the
/// nominal 1 GHz); idle time may make up at most <see cref="LongestCatchUpNs"/> of that lag, so a guest woken by its
/// timer tick a few hundred times a second still keeps to the host's clock, while a long computation (a boot) is
/// never followed by a race through virtual time. The guests see exactly the same virtual times either way; only the
/// host's pace changes, so a paced run is as deterministic as any other.
/// </summary>
internal sealed class HostTimePacer
{
    /// <summary>Sleep once the idle time passed is this far (1 ms) ahead of the host's.</summary>
    private const long SleepThresholdNs = 1_000_000;

    /// <summary>The longest single sleep (100 ms), so a wake-up is never far away.</summary>
    private const long LongestSleepNs = 100_000_000;

    /// <summary>The most busy-time lag (100 ms) that idle time may catch up on without sleeping.</summary>
    private const long LongestCatchUpNs = 100_000_000;

    private readonly Stopwatch _host = Stopwatch.StartNew();
    private long _lastHostNs;
    private long _aheadNs;

    /// <summary>Called after every round with the virtual ticks (nanoseconds) it spent idle; sleeps when they ran ahead of the host.</summary>
    public Task PaceAsync(long idleTicks, CancellationToken cancellationToken)
    {
        long now = _host.Elapsed.Ticks * 100;
        _aheadNs = Math.Max(-LongestCatchUpNs, _aheadNs + idleTicks - (now - _lastHostNs));
        _lastHostNs = now;
        if (_aheadNs < SleepThresholdNs)
        {
            return Task.CompletedTask;
        }

        // The next call counts the time actually slept, so an early or late wake-up evens out.
        return Task.Delay(TimeSpan.FromTicks(Math.Min(_aheadNs, LongestSleepNs) / 100), cancellationToken);
    }
}
