using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// The ACPI fixed registers (ACPI 6.5, 4.8): the 24-bit PM timer at 3.579545 MHz on virtual time, TMR_STS and the SCI,
/// PM1_CNT's SCI_EN and the S5 transition. Linux's use of them (its acpi_pm clocksource, TSC calibration and ACPI power
/// off) is checked end to end by <c>DebianLinuxTests</c>.
/// </summary>
public class AcpiPmDeviceTests
{
    private const long Second = 1_000_000_000;

    private ManualClock _clock = new();
    private CountingControl _control = new();
    private RecordingLine _sci = new();
    private ManualTimer? _timer;

    [SetUp]
    public void PowerOn() => (_clock, _control, _sci, _timer) = (new(), new(), new(), null);

    private AcpiPmDevice Create() => new(_clock, _control, _sci, onExpired => _timer = new ManualTimer(onExpired));

    [Test]
    public void ThePmTimerCountsAt3579545HzOnVirtualTimeAndWrapsAt24Bits()
    {
        AcpiPmDevice pm = Create();
        Assert.That(pm.In(AcpiPmDevice.TimerBlock, 4), Is.Zero);
        _clock.Now = Second;
        Assert.That(pm.In(AcpiPmDevice.TimerBlock, 4), Is.EqualTo(3_579_545u));
        _clock.Now = 5 * Second; // 17,897,725 counts: past 2^24
        Assert.That(pm.In(AcpiPmDevice.TimerBlock, 4), Is.EqualTo(17_897_725u & 0xFF_FFFF));
        Assert.That(pm.In(AcpiPmDevice.TimerBlock + 1, 1), Is.EqualTo((17_897_725u & 0xFF_FFFF) >> 8 & 0xFF), "byte reads see the same register");
    }

    [Test]
    public void TmrStatusSetsWhenBit23ChangesAndWritingOneClearsIt()
    {
        AcpiPmDevice pm = Create();
        long bit23 = ((1L << 23) * Second + 3_579_544) / 3_579_545; // the first instant the count reaches 2^23
        _clock.Now = bit23 - 1;
        Assert.That(pm.In(AcpiPmDevice.EventBlock, 2) & 1, Is.Zero);
        _clock.Now = bit23;
        Assert.That(pm.In(AcpiPmDevice.EventBlock, 2) & 1, Is.EqualTo(1u));
        pm.Out(AcpiPmDevice.EventBlock, 0, 2); // writing 0 changes nothing
        Assert.That(pm.In(AcpiPmDevice.EventBlock, 2) & 1, Is.EqualTo(1u));
        pm.Out(AcpiPmDevice.EventBlock, 1, 2);
        Assert.That(pm.In(AcpiPmDevice.EventBlock, 2) & 1, Is.Zero);
    }

    [Test]
    public void WithTmrEnTheSciFollowsTmrStatusOnATimer()
    {
        AcpiPmDevice pm = Create();
        pm.Out(AcpiPmDevice.EventBlock + 2, 1, 2); // TMR_EN
        long bit23 = ((1L << 23) * Second + 3_579_544) / 3_579_545;
        Assert.That((_sci.IsRaised, _timer!.Deadline), Is.EqualTo((false, (long?)bit23)));

        _clock.Now = bit23;
        _timer.OnExpired(bit23);
        Assert.That(_sci.IsRaised, Is.True);
        pm.Out(AcpiPmDevice.EventBlock, 1, 2);
        Assert.That(_sci.IsRaised, Is.False, "clearing TMR_STS drops the SCI");
        Assert.That(_timer.Deadline, Is.EqualTo(((2L << 23) * Second + 3_579_544) / 3_579_545));
    }

    [Test]
    public void Pm1ControlReadsSciEnAndSleepTypeZeroWithSleepEnablePowersOff()
    {
        AcpiPmDevice pm = Create();
        Assert.That(pm.In(AcpiPmDevice.ControlBlock, 2), Is.EqualTo(1u), "SCI_EN: always in ACPI mode (no SMI command port)");
        pm.Out(AcpiPmDevice.ControlBlock, 5 << 10, 2);      // SLP_TYP 5 without SLP_EN: nothing
        pm.Out(AcpiPmDevice.ControlBlock, (5 << 10) | (1 << 13), 2); // a sleep type the DSDT does not offer: ignored
        Assert.That(_control.Others, Is.Zero);
        pm.Out(AcpiPmDevice.ControlBlock, 1 << 13, 2);      // \_S5: SLP_TYP 0
        Assert.That(_control.Others, Is.EqualTo(1));
        Assert.That(pm.In(AcpiPmDevice.ControlBlock, 2) & (1 << 13), Is.Zero, "SLP_EN is write-only");
    }

    [Test]
    public void ItsSavedStateKeepsTheEnablesAndTheClearedPeriod()
    {
        AcpiPmDevice pm = Create();
        _clock.Now = 3 * Second;
        pm.Out(AcpiPmDevice.EventBlock, 1, 2);
        pm.Out(AcpiPmDevice.EventBlock + 2, 1, 2);
        AcpiPmDevice copy = Create();
        Assert.That(pm.CopyStateTo(copy), Is.True);
        Assert.That((copy.In(AcpiPmDevice.EventBlock, 2), copy.In(AcpiPmDevice.EventBlock + 2, 2)), Is.EqualTo((0u, 1u)));
    }
}
