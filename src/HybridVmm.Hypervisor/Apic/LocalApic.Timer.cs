using static HybridVmm.Hypervisor.Apic.ApicRegisters;

namespace HybridVmm.Hypervisor.Apic;

/// <summary>
/// The APIC timer (SDM Vol. 3A, 11.5.4) on the partition's virtual time: the count decrements at 1 GHz divided by the
/// divide configuration (1 to 128), so a count of N with divisor D reaches zero N × D virtual ticks after it was written;
/// one-shot stops there, periodic reloads N. It is computed from the time counting started, never ticked, and the
/// scheduler stops the vCPU exactly at <see cref="TimerDeadline"/>, so the interrupt lands on the same instruction in
/// every run. TSC-deadline mode is not offered (CPUID does not report it; LVT timer bit 18 is reserved).
/// </summary>
internal sealed partial class LocalApic
{
    private uint _initialCount, _divide;
    private long _timerStart;

    /// <summary>The virtual time of the timer's next interrupt; null when it is stopped or its LVT entry masked.</summary>
    public long? TimerDeadline { get; private set; }

    /// <summary>log2 of the divisor: bits 3, 1, 0 of the divide configuration; 0b111 is divide by 1 (SDM figure 11-10).</summary>
    private int DivideShift
    {
        get
        {
            uint v = (_divide & 3) | ((_divide >> 1) & 4);
            return (int)((v + 1) & 7);
        }
    }

    private bool Periodic => (_lvt[LvtTimer] & LvtTimerPeriodic) != 0;

    private void ResetTimer()
    {
        _initialCount = _divide = 0;
        _timerStart = 0;
        TimerDeadline = null;
    }

    private void LoadInitialCount(uint count, long now)
    {
        _initialCount = count;
        _timerStart = now;
        RearmTimer(now);
    }

    /// <summary>A new divisor applies from now on: the count reached so far is kept and counts on at the new rate.</summary>
    private void WriteDivide(uint value, long now)
    {
        uint current = CurrentCountAt(now);
        _divide = value & DivideWritable;
        if (_initialCount != 0 && current != 0)
        {
            // Restart as if the count reached so far had just been loaded, within the same period.
            _timerStart = now - ((long)(_initialCount - current) << DivideShift);
        }

        RearmTimer(now);
    }

    /// <summary>The current-count register: N down to 0 (one-shot), or N down to 1 and N again (periodic).</summary>
    private uint CurrentCountAt(long now)
    {
        if (_initialCount == 0)
        {
            return 0;
        }

        long elapsed = Math.Max(now - _timerStart, 0) >> DivideShift;
        if (Periodic)
        {
            return (uint)(_initialCount - elapsed % _initialCount);
        }

        return elapsed >= _initialCount ? 0 : (uint)(_initialCount - elapsed);
    }

    /// <summary>Arms the deadline for the first zero of the count after <paramref name="now"/>; a masked entry arms nothing.</summary>
    private void RearmTimer(long now)
    {
        TimerDeadline = null;
        if (_initialCount == 0 || (_lvt[LvtTimer] & LvtMasked) != 0 || !GloballyEnabled)
        {
            return;
        }

        long period = (long)_initialCount << DivideShift;
        if (!Periodic)
        {
            long end = _timerStart + period;
            TimerDeadline = end > now ? end : null;
            return;
        }

        long periods = Math.Max(now - _timerStart, 0) / period + 1;
        TimerDeadline = _timerStart + periods * period;
    }

    /// <summary>The scheduler reached <see cref="TimerDeadline"/>: the LVT timer's interrupt, then the next period's deadline.</summary>
    public void TimerExpired(long now)
    {
        if (TimerDeadline is not { } deadline || deadline > now)
        {
            return;
        }

        DeliverLocal(LvtTimer);
        if (Periodic)
        {
            long period = (long)_initialCount << DivideShift;
            TimerDeadline = deadline + ((now - deadline) / period + 1) * period;
        }
        else
        {
            TimerDeadline = null;
        }
    }
}
