using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// The 8254 through its ports on a hand-moved virtual clock (1 tick = 1 ns, 1.193182 MHz input), checked against the
/// 8254 data sheet's mode definitions; the power-on modes are those the pic sample guest read under QEMU.
/// </summary>
public class Pit8254Tests
{
    private ManualClock _clock = new();
    private RecordingLine _irq0 = new();
    private ManualTimer? _timer;

    [SetUp]
    public void NewMachine()
    {
        _clock = new ManualClock();
        _irq0 = new RecordingLine();
        _timer = null;
    }

    private Pit8254 NewPit() => new(_clock, _irq0, onExpired => _timer = new ManualTimer(onExpired));

    /// <summary>The first virtual time at which <paramref name="clocks"/> input clocks have passed since <paramref name="from"/>.</summary>
    private static long At(long from, long clocks) => from + (clocks * 1_000_000_000 + 1_193_181) / 1_193_182;

    private void RunTo(long time)
    {
        while (_timer!.Deadline is { } deadline && deadline <= time)
        {
            _clock.Now = deadline;
            _timer.Deadline = null;
            _timer.OnExpired(deadline);
        }

        _clock.Now = time;
    }

    private static uint Status(Pit8254 pit, int channel)
    {
        pit.Out(0x43, (uint)(0xE0 | (2 << channel)));
        return pit.In((ushort)(0x40 + channel));
    }

    [Test]
    public void PowerOnModesAreTheFirmwaresAndChannel0TicksAt18Hz()
    {
        Pit8254 pit = NewPit();
        Assert.That((_irq0.IsRaised, _irq0.Raises), Is.EqualTo((true, 1)), "OUT of mode 2 is high between pulses");
        string qemu = File.ReadAllText(Path.ChangeExtension(Support.Repository.GuestElf("pic"), ".qemu.txt"));
        Assert.That(qemu, Does.Contain("pit status ch0 34 ch1 06 ch2 06"));
        Assert.Multiple(() =>
        {
            Assert.That((Status(pit, 0) & 0x3F, Status(pit, 1) & 0x3F, Status(pit, 2) & 0x3F), Is.EqualTo((0x34u, 0x06u, 0x06u)));
            Assert.That(pit.In(0x61) & 0x0F, Is.Zero);
            Assert.That(_timer!.Deadline, Is.EqualTo(At(0, 65536)), "mode 2: OUT falls when the count reaches 1, 65,536 clocks after the load");
        });
        RunTo(At(0, 65537));
        Assert.That(_irq0.Raises, Is.EqualTo(2), "and rises one clock later: one edge per period");
    }

    [Test]
    public void Mode0OutGoesHighNPlusOneClocksAfterTheCountIsWritten()
    {
        Pit8254 pit = NewPit();
        _clock.Now = 1000;
        pit.Out(0x43, 0x30);
        pit.Out(0x40, 100);
        Assert.That(Status(pit, 0) & 0xC0, Is.EqualTo(0x40u), "OUT low, null count until the first clock loads the count");
        pit.Out(0x40, 0);
        int rises = _irq0.Raises;
        Assert.That(_timer!.Deadline, Is.EqualTo(At(1000, 101)));
        RunTo(At(1000, 101) - 1);
        Assert.That((_irq0.IsRaised, Status(pit, 0) & 0xC0), Is.EqualTo((false, 0x00u)));
        RunTo(At(1000, 101));
        Assert.Multiple(() =>
        {
            Assert.That((_irq0.IsRaised, _irq0.Raises - rises), Is.EqualTo((true, 1)));
            Assert.That(_timer.Deadline, Is.Null, "a one-shot: nothing more");
            Assert.That(Status(pit, 0), Is.EqualTo(0xB0u));
        });
    }

    [Test]
    public void TheCounterLatchHoldsTheCountWhileTimePasses()
    {
        Pit8254 pit = NewPit();
        pit.Out(0x43, 0x34);            // channel 0, LSB/MSB, mode 2
        pit.Out(0x40, 0x00); pit.Out(0x40, 0x10); // 4096
        _clock.Now = At(0, 1 + 96);     // 96 clocks counted after the load clock
        pit.Out(0x43, 0x00);            // latch channel 0
        _clock.Now += 50_000;
        uint latched = pit.In(0x40) | (pit.In(0x40) << 8);
        uint live = pit.In(0x40) | (pit.In(0x40) << 8);
        Assert.That((latched, live), Is.EqualTo((4000u, 4000u - 59u)));
    }

    [Test]
    public void Port61GatesChannel2AndShowsOut2()
    {
        Pit8254 pit = NewPit();
        pit.Out(0x43, 0xB0);            // channel 2, LSB/MSB, mode 0
        pit.Out(0x42, 10); pit.Out(0x42, 0);
        _clock.Now = At(0, 50);
        Assert.That(pit.In(0x61) & 0x21, Is.Zero, "gate low: mode 0 does not count");
        pit.Out(0x61, 0x03);
        long start = _clock.Now;
        _clock.Now = At(start, 10);
        Assert.That(pit.In(0x61) & 0x23, Is.EqualTo(0x03u));
        _clock.Now = At(start, 11);
        Assert.That(pit.In(0x61) & 0x23, Is.EqualTo(0x23u), "OUT2 after N + 1 counted clocks");
    }

    [Test]
    public void Mode3IsASquareWaveWithBothEdgesOnTheTimer()
    {
        Pit8254 pit = NewPit();
        pit.Out(0x43, 0x36);
        pit.Out(0x40, 100); pit.Out(0x40, 0);
        Assert.That(_timer!.Deadline, Is.EqualTo(At(0, 1 + 50)), "high for the first half");
        RunTo(At(0, 1 + 50));
        Assert.That(_irq0.IsRaised, Is.False);
        Assert.That(_timer.Deadline, Is.EqualTo(At(0, 1 + 100)));
    }

    [Test]
    public void NonsenseFromTheGuestNeverThrows()
    {
        Pit8254 pit = NewPit();
        var random = new Random(4);
        ushort[] ports = [0x40, 0x41, 0x42, 0x43, 0x61];
        for (int i = 0; i < 20_000; i++)
        {
            _clock.Now += random.Next(5000);
            ushort port = ports[random.Next(ports.Length)];
            if (random.Next(2) == 0) pit.Write(port, 1 << random.Next(3), (uint)random.Next());
            else pit.Read(port, 1 << random.Next(3));
            if (_timer?.Deadline is { } d && d <= _clock.Now) RunTo(_clock.Now);
        }

        var copy = new Pit8254(_clock);
        Assert.That(pit.CopyStateTo(copy), Is.True);
        Assert.That(copy.Save().Channels, Is.EqualTo(pit.Save().Channels));
    }
}
