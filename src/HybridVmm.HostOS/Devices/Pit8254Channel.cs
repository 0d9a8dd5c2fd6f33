namespace HybridVmm.HostOS.Devices;

/// <summary>
/// One counter of an Intel 8254, computed from the VM's virtual time instead of ticked: the count and OUT at any time
/// follow from the initial count N, the mode and the clock at which counting started (8254 data sheet, "Mode
/// Definitions"). The first clock pulse after a count is written loads it into the counting element, so OUT of a mode 0
/// one-shot goes high N + 1 clocks after the write, and the null-count status bit is set until that clock.
/// </summary>
/// <remarks>
/// Modes 0-5 are computed; 6 and 7 are modes 2 and 3 (the data sheet's "don't care" bit). BCD counting is recorded and
/// reported but counts in binary with N up to 10,000 for a count of 0. The gate: low stops counting in modes 0, 2, 3 and
/// 4 (and forces OUT high in 2 and 3); a rising edge starts modes 1 and 5 and restarts 2 and 3.
/// </remarks>
internal sealed class Pit8254Channel
{
    public const long Frequency = 1_193_182;
    private const long TicksPerSecond = Hardware.Clock.VirtualClock.TicksPerSecond;

    public byte Mode;          // 0-5 (6 and 7 are stored as 2 and 3)
    public byte Access = 3;    // 1 LSB, 2 MSB, 3 LSB then MSB
    public bool Bcd;
    public int Count = 0x10000; // N, 1-65536
    public bool CountWritten;   // a count has been written since the control word
    public bool Gate = true;
    public bool Armed;          // counting (or, in modes 1 and 5, triggered)
    public long StartTime;      // virtual time of the write (or trigger) that started counting
    public long FrozenClocks;   // clocks already counted before StartTime (gate low in modes 0 and 4)
    public bool Paused;         // gate low in a mode that stops counting: FrozenClocks holds the position
    // Reads and writes of the two-byte access mode, the latches.
    public bool WriteMsbNext, ReadMsbNext, LatchMsbNext;
    public byte WriteLsb;
    public int? Latched;        // a latched count
    public byte? StatusLatch;   // a latched status (read-back)

    /// <summary>Clocks counted from the start (the first is the load into the counting element).</summary>
    public long Clocks(long now)
    {
        if (!Armed)
        {
            return -1;
        }

        if (Paused)
        {
            return FrozenClocks;
        }

        long elapsed = Math.Max(0, now - StartTime);
        return FrozenClocks + (long)((Int128)elapsed * Frequency / TicksPerSecond);
    }

    /// <summary>The first virtual time at or after which <paramref name="clocks"/> clocks have been counted.</summary>
    public long TimeOfClock(long clocks)
    {
        long needed = clocks - FrozenClocks;
        return StartTime + (long)(((Int128)needed * TicksPerSecond + Frequency - 1) / Frequency);
    }

    private int Period => Mode is 2 or 3 && Count == 1 ? 2 : Count;

    /// <summary>OUT at <paramref name="now"/>.</summary>
    public bool Out(long now)
    {
        long c = Clocks(now);
        switch (Mode)
        {
            case 0:
                return Armed && c >= Count + 1; // low from the control word until the count ran out
            case 1:
                return !Armed || c < 1 || c >= Count + 1; // low from the trigger's load until the count ran out
            case 2:
                if (!Armed || !Gate || c < 1) return true;
                return (c - 1) % Period != Period - 1; // low for the one clock at which the count reaches 1
            case 3:
                if (!Armed || !Gate || c < 1) return true;
                return (c - 1) % Period < (Period + 1) / 2; // high for the first half (rounded up), low for the rest
            default: // 4 and 5: a one-clock strobe when the count reaches 0
                return !Armed || c != Count + 1;
        }
    }

    /// <summary>The next virtual time after <paramref name="now"/> at which OUT changes, or null if it never will by itself.</summary>
    public long? NextOutChange(long now)
    {
        if (!Armed || Paused)
        {
            return null;
        }

        long c = Clocks(now);
        long next;
        switch (Mode)
        {
            case 0:
                if (c >= Count + 1) return null;
                next = Count + 1;
                break;
            case 1:
                if (c >= Count + 1) return null;
                next = c < 1 ? 1 : Count + 1;
                break;
            case 4:
            case 5:
                if (c >= Count + 2) return null;
                next = c < Count + 1 ? Count + 1 : Count + 2;
                break;
            default:
                if (!Gate) return null;
                int period = Period;
                int fall = (Mode & 3) == 2 ? period - 1 : (period + 1) / 2; // the phase (clocks after the load) at which OUT falls
                if (c < 1)
                {
                    next = 1 + fall;
                    break;
                }

                long phase = (c - 1) % period, cycle = c - 1 - phase;
                next = 1 + cycle + (phase < fall ? fall : period);
                break;
        }

        return TimeOfClock(next);
    }

    /// <summary>The counting element as a read or a latch sees it.</summary>
    public int CurrentCount(long now)
    {
        long c = Clocks(now);
        if (c < 1)
        {
            return Count & 0xFFFF;
        }

        long d = c - 1;
        return Mode switch
        {
            2 => (int)(Period - d % Period) & 0xFFFF,
            3 => (int)(Period - 2 * d % Period) & 0xFFFE,
            _ => (int)((Count - d) & 0xFFFF),
        };
    }

    /// <summary>The read-back status byte: OUT, null count, access mode, mode, BCD.</summary>
    public byte Status(long now) => (byte)((Out(now) ? 0x80 : 0) | (NullCount(now) ? 0x40 : 0) | (Access << 4) | (Mode << 1) | (Bcd ? 1 : 0));

    /// <summary>Null count: the count written has not been loaded into the counting element yet.</summary>
    private bool NullCount(long now) => !CountWritten || (Mode is not (1 or 5) && Clocks(now) < 1) || (Mode is 1 or 5 && !Armed);

    /// <summary>Starts counting at <paramref name="now"/> from the count just written (or the trigger).</summary>
    public void Start(long now)
    {
        Armed = true;
        StartTime = now;
        FrozenClocks = 0;
        Paused = !Gate && Mode is 0 or 4;
    }

    public void SetGate(bool gate, long now)
    {
        if (gate == Gate)
        {
            return;
        }

        if (Mode is 0 or 4 && Armed)
        {
            if (!gate)
            {
                FrozenClocks = Clocks(now);
                Paused = true;
            }
            else
            {
                Paused = false;
                StartTime = now;
            }
        }

        Gate = gate;
        if (gate && CountWritten && Mode is 1 or 5 or 2 or 3)
        {
            Start(now); // a rising edge triggers (1, 5) or restarts (2, 3) the count
        }
    }
}
