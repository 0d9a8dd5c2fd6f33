using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// A UART on a hand-moved virtual clock: its timers (the character timeout, the host input's pace) fire when the
/// test advances the clock past their deadlines, earliest first, as the worker's device timers do.
/// </summary>
internal sealed class UartBench
{
    private readonly List<ManualTimer> _timers = new();

    public UartBench()
    {
        Uart = new Uart16550(Uart16550.Com1Base, Sent.Add, Line, Clock, onExpired =>
        {
            var timer = new ManualTimer(onExpired);
            _timers.Add(timer);
            return timer;
        });
    }

    public Uart16550 Uart { get; }

    public ManualClock Clock { get; } = new();

    public RecordingLine Line { get; } = new();

    public List<byte> Sent { get; } = new();

    /// <summary>The earliest armed deadline, or null.</summary>
    public long? NextDeadline => _timers.Where(t => t.Deadline is not null).Min(t => t.Deadline);

    /// <summary>Moves the clock to <paramref name="time"/>, firing every timer due on the way at its own deadline.</summary>
    public void AdvanceTo(long time)
    {
        while (NextDeadline is { } deadline && deadline <= time)
        {
            Clock.Now = deadline;
            foreach (ManualTimer timer in _timers.Where(t => t.Deadline == deadline).ToArray())
            {
                timer.Deadline = null;
                timer.OnExpired(deadline);
            }
        }

        Clock.Now = time;
    }

    public void AdvanceBy(long ticks) => AdvanceTo(Clock.Now + ticks);
}

/// <summary>A serial input from a script: its bytes, then the end (or, interactive, "nothing yet" until more are typed).</summary>
internal sealed class ScriptedInput(bool interactive = false) : ISerialInput
{
    private readonly Queue<byte> _bytes = new();

    public int Reads { get; private set; }

    public ScriptedInput Type(string text)
    {
        foreach (char c in text) _bytes.Enqueue((byte)c);
        return this;
    }

    public SerialInputStatus Read(out byte value)
    {
        Reads++;
        if (_bytes.TryDequeue(out value)) return SerialInputStatus.Byte;
        return interactive ? SerialInputStatus.NotYet : SerialInputStatus.End;
    }
}
