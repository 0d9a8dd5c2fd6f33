namespace HybridVmm.HostOS.Devices;

/// <summary>The RTC's events: register C's flags (update ended, alarm, periodic) and IRQ 8 on a virtual-time timer.</summary>
public sealed partial class Mc146818Rtc
{
    /// <summary>Adds the events since the last check to register C, and IRQF if an enabled one has happened.</summary>
    private void Accumulate()
    {
        long now = _clock.Now, then = Math.Min(_flagsCheckedAt, now);
        _flagsCheckedAt = now;
        byte flags = _cmos[RegisterC];
        if (!Frozen)
        {
            long secondsBefore = Elapsed(then) / TicksPerSecond, secondsNow = Elapsed(now) / TicksPerSecond;
            if (secondsNow > secondsBefore)
            {
                flags |= CUpdateEnded;
                if (AlarmMatchedBetween(_baseSeconds + secondsBefore, _baseSeconds + secondsNow))
                {
                    flags |= CAlarm;
                }
            }

            if (PeriodicTicks(then) != PeriodicTicks(now))
            {
                flags |= CPeriodic;
            }
        }

        if ((flags & EnabledInterrupts) != 0)
        {
            flags |= CInterrupt;
        }

        _cmos[RegisterC] = flags;
    }

    /// <summary>The flags of register C whose interrupts register B enables (PIE, AIE and UIE sit on PF, AF and UF's bits).</summary>
    private byte EnabledInterrupts => (byte)(_cmos[RegisterB] & (BPeriodicEnable | BAlarmEnable | BUpdateEnable));

    /// <summary>The timer: records what happened by now, raises IRQ 8 if an enabled event did, and waits for the next.</summary>
    private void OnTimer(long now)
    {
        Accumulate();
        if ((_cmos[RegisterC] & CInterrupt) != 0)
        {
            _irq!.Raise();
        }

        Reschedule();
    }

    /// <summary>
    /// Arms the timer for the next event whose interrupt is enabled: the next second's update (for UIE, and AIE,
    /// whose match is checked at each update) and the next periodic edge (PIE). Nothing is armed while IRQF is
    /// pending (the line stays raised until register C is read), while the clock is stopped, or with nothing enabled.
    /// </summary>
    private void Reschedule()
    {
        if (_timer is null)
        {
            return;
        }

        byte enabled = EnabledInterrupts;
        if (enabled == 0 || Frozen || (_cmos[RegisterC] & CInterrupt) != 0)
        {
            _timer.Cancel();
            return;
        }

        long now = _clock.Now;
        long deadline = long.MaxValue;
        if ((enabled & (BUpdateEnable | BAlarmEnable)) != 0)
        {
            deadline = _baseTime + (Elapsed(now) / TicksPerSecond + 1) * TicksPerSecond;
        }

        if ((enabled & BPeriodicEnable) != 0 && PeriodShift() is int shift)
        {
            // The first virtual time at which the count of 32.768 kHz cycles reaches the next period.
            long cycles = (PeriodicTicks(now) + 1) << shift;
            long edge = _baseTime + cycles / 32768 * TicksPerSecond + (cycles % 32768 * TicksPerSecond + 32767) / 32768;
            deadline = Math.Min(deadline, edge);
        }

        if (deadline == long.MaxValue)
        {
            _timer.Cancel();
            return;
        }

        _timer.ArmAt(Math.Max(deadline, now + 1));
    }

    /// <summary>How many periodic-interrupt periods have passed by <paramref name="time"/> (rate select: register A bits 3:0).</summary>
    private long PeriodicTicks(long time)
    {
        if (PeriodShift() is not int shift)
        {
            return 0;
        }

        long elapsed = Elapsed(time);
        long cycles = elapsed / TicksPerSecond * 32768 + elapsed % TicksPerSecond * 32768 / TicksPerSecond;
        return cycles >> shift;
    }

    /// <summary>
    /// The periodic rate as a power of two of 32.768 kHz cycles, or null for none: the period is 2^(rate-1) / 32768 s,
    /// and rates 1 and 2 are the 256 Hz and 128 Hz of rates 8 and 9.
    /// </summary>
    private int? PeriodShift()
    {
        int rate = _cmos[RegisterA] & 0x0F;
        return rate == 0 ? null : (rate <= 2 ? rate + 7 : rate) - 1;
    }

    /// <summary>Whether a second in (<paramref name="from"/>, <paramref name="to"/>] matched the alarm (0xC0-0xFF in a field: any value).</summary>
    private bool AlarmMatchedBetween(long from, long to)
    {
        for (long s = Math.Max(from + 1, to - 86_399); s <= to; s++)
        {
            var t = new DateTime(s * TimeSpan.TicksPerSecond);
            if (AlarmField(_cmos[0x01], Encode(t.Second)) && AlarmField(_cmos[0x03], Encode(t.Minute)) && AlarmField(_cmos[0x05], ReadTime(0x04, t)))
            {
                return true;
            }
        }

        return false;
    }

    private static bool AlarmField(byte alarm, byte value) => (alarm & 0xC0) == 0xC0 || alarm == value;
}
