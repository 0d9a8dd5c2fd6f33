namespace HybridVmm.Hardware.Clock;

/// <summary>
/// The machine's virtual clock, in ticks of a nominal 1 GHz core (one tick per retired instruction).
/// It only moves when the simulator says so, never with the wall clock, so runs are reproducible.
/// </summary>
public sealed class VirtualClock
{
    public const long TicksPerSecond = 1_000_000_000;

    public long Ticks { get; private set; }

    public void Advance(long ticks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ticks);
        Ticks += ticks;
    }

    public static string Format(long ticks) => ticks switch
    {
        < 10_000 => $"{ticks} ns",
        < 10_000_000 => $"{ticks / 1000.0:0.0} us",
        _ => $"{ticks / 1_000_000.0:0.00} ms",
    };
}
