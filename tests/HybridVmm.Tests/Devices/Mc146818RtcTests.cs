using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

public class Mc146818RtcTests
{
    private const long Second = 1_000_000_000;
    private static readonly DateTime Epoch = new(2024, 2, 29, 23, 59, 58, DateTimeKind.Utc);

    // NUnit runs every test of a fixture on one instance: each test gets its own.
    private ManualClock _clock = new();

    [SetUp]
    public void NewFixtureState() => _clock = new();

    private Mc146818Rtc NewRtc(uint ram = 64u << 20) => new(_clock, Epoch, ram);

    private static uint Cmos(Mc146818Rtc rtc, byte index)
    {
        rtc.Out(Mc146818Rtc.IndexPort, index);
        return rtc.In(Mc146818Rtc.DataPort);
    }

    private static void SetCmos(Mc146818Rtc rtc, byte index, byte value)
    {
        rtc.Out(Mc146818Rtc.IndexPort, index);
        rtc.Out(Mc146818Rtc.DataPort, value);
    }

    private static string Date(Mc146818Rtc rtc) =>
        $"{Cmos(rtc, 0x32):x2}{Cmos(rtc, 9):x2}-{Cmos(rtc, 8):x2}-{Cmos(rtc, 7):x2} {Cmos(rtc, 4):x2}:{Cmos(rtc, 2):x2}:{Cmos(rtc, 0):x2} w{Cmos(rtc, 6)}";

    [Test]
    public void TheDateIsTheEpochAdvancedByVirtualTimeInBcd()
    {
        Mc146818Rtc rtc = NewRtc();
        Assert.That(Date(rtc), Is.EqualTo("2024-02-29 23:59:58 w5"), "a Thursday: weekday 5 counting Sunday as 1");
        _clock.Now = 2 * Second + 1;
        Assert.That(Date(rtc), Is.EqualTo("2024-03-01 00:00:00 w6"), "past midnight of a leap day");
        _clock.Now = 3 * Second - 1;
        Assert.That(Cmos(rtc, 0), Is.EqualTo(0x00u), "one tick before the next second");
    }

    [Test]
    public void BinaryAndTwelveHourModesFollowRegisterB()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.BBinary); // binary, 12-hour
        Assert.Multiple(() =>
        {
            Assert.That(Cmos(rtc, 4), Is.EqualTo(0x80u | 11), "11 PM");
            Assert.That(Cmos(rtc, 2), Is.EqualTo(59u));
            Assert.That(Cmos(rtc, 9), Is.EqualTo(24u));
            Assert.That(Cmos(rtc, 0x32), Is.EqualTo(20u));
        });
        _clock.Now = 3 * Second;
        Assert.That(Cmos(rtc, 4), Is.EqualTo(12u), "12 AM");
        SetCmos(rtc, Mc146818Rtc.RegisterB, 0); // BCD, 12-hour
        _clock.Now = 13 * 3600 * Second;
        Assert.That(Cmos(rtc, 4), Is.EqualTo(0x80u | 0x12), "12 PM (noon) in BCD");
    }

    [Test]
    public void WritingATimeRegisterSetsTheClockWhichThenRunsOn()
    {
        Mc146818Rtc rtc = NewRtc();
        _clock.Now = Second / 2;
        SetCmos(rtc, 0x09, 0x31); // 29 February 2031 does not exist: refused
        SetCmos(rtc, 0x09, 0x28);
        SetCmos(rtc, 0x04, 0x07);
        Assert.That(Date(rtc), Is.EqualTo("2028-02-29 07:59:58 w3"));
        _clock.Now = Second;
        Assert.That(Cmos(rtc, 0x00), Is.EqualTo(0x59u), "the phase of the second is kept: the next update comes on time");
    }

    [Test]
    public void AnImpossibleDateIsRefusedAndTheClockKeepsItsTime()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, 0x07, 0x31); // 31 February
        SetCmos(rtc, 0x08, 0x13); // month 13
        Assert.That(Date(rtc), Is.EqualTo("2024-02-29 23:59:58 w5"));
    }

    [Test]
    public void TheSetBitStopsTheClockWhileTheGuestWritesIt()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.BSet | Mc146818Rtc.B24Hour | Mc146818Rtc.BUpdateEnable);
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterB) & Mc146818Rtc.BUpdateEnable, Is.Zero, "SET clears UIE");
        SetCmos(rtc, 0x00, 0x30);
        _clock.Now = 10 * Second;
        Assert.That(Cmos(rtc, 0x00), Is.EqualTo(0x30u), "stopped");
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour);
        _clock.Now = 12 * Second;
        Assert.That(Cmos(rtc, 0x00), Is.EqualTo(0x32u), "runs again from what was set");
    }

    [Test]
    public void UpdateInProgressIsSetInTheLast244MicrosecondsOfEachSecond()
    {
        Mc146818Rtc rtc = NewRtc();
        _clock.Now = Second - 244_001;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterA), Is.EqualTo(0x26u));
        _clock.Now = Second - 244_000;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterA), Is.EqualTo(0xA6u));
        _clock.Now = Second;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterA), Is.EqualTo(0x26u));
    }

    [Test]
    public void RegisterCReportsTheEventsSinceItWasLastReadAndClears()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterA, 0x20); // no periodic rate
        SetCmos(rtc, 0x05, 0x12);                  // the alarm at 12:00:00, not the midnight the clock passes
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC), Is.Zero);
        _clock.Now = Second;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC), Is.EqualTo((uint)Mc146818Rtc.CUpdateEnded), "an update, no interrupt enabled");
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC), Is.Zero, "cleared by the read");
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour | Mc146818Rtc.BUpdateEnable);
        _clock.Now = 2 * Second;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC), Is.EqualTo((uint)(Mc146818Rtc.CUpdateEnded | Mc146818Rtc.CInterrupt)));
    }

    [Test]
    public void ThePeriodicFlagFollowsTheRateInRegisterA()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterA, 0x2F); // rate 15: every 500 ms
        Cmos(rtc, Mc146818Rtc.RegisterC);
        _clock.Now = 499_000_000;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC) & Mc146818Rtc.CPeriodic, Is.Zero);
        _clock.Now = 500_000_000;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC) & Mc146818Rtc.CPeriodic, Is.EqualTo((uint)Mc146818Rtc.CPeriodic));
    }

    [Test]
    public void TheAlarmFlagIsSetWhenASecondMatchesTheAlarm()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterA, 0x20);
        SetCmos(rtc, 0x01, 0x03); // hh:mm:03 (BCD); the clock reads 00:00:03 at 5 s
        SetCmos(rtc, 0x03, 0xC0); // any minute
        SetCmos(rtc, 0x05, 0xC0); // any hour
        Cmos(rtc, Mc146818Rtc.RegisterC);
        _clock.Now = 6 * Second;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC) & Mc146818Rtc.CAlarm, Is.EqualTo((uint)Mc146818Rtc.CAlarm));
        _clock.Now = 7 * Second;
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterC) & Mc146818Rtc.CAlarm, Is.Zero);
    }

    [TestCase(64u << 20, 640, 64512, 64512, 768)]
    [TestCase(2u << 20, 640, 1024, 1024, 0)]
    [TestCase(2016u << 20, 640, 0xFFFF, 0xFFFF, 32000)]
    public void TheMemorySizeBytesAreQemus(uint ram, int baseKiB, int extendedKiB, int extended2KiB, int above16M)
    {
        Mc146818Rtc rtc = NewRtc(ram);
        uint Word(byte index) => Cmos(rtc, index) | Cmos(rtc, (byte)(index + 1)) << 8;
        Assert.That(new[] { Word(0x15), Word(0x17), Word(0x30), Word(0x34) }, Is.EqualTo(new uint[] { (uint)baseKiB, (uint)extendedKiB, (uint)extended2KiB, (uint)above16M }));
    }

    [Test]
    public void RegistersCAndDCannotBeWrittenAndDReportsAValidBattery()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterD, 0x00);
        Assert.That(Cmos(rtc, Mc146818Rtc.RegisterD), Is.EqualTo(0x80u));
    }

    [Test]
    public void TheIndexPortReadsAllOnesAndBitSevenDisablesNmiButSelectsTheSameByte()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, 0x50, 0xA5);
        rtc.Out(Mc146818Rtc.IndexPort, 0xD0);
        Assert.Multiple(() =>
        {
            Assert.That(rtc.In(Mc146818Rtc.DataPort), Is.EqualTo(0xA5u));
            Assert.That(rtc.NmiDisabled, Is.True);
            Assert.That(rtc.In(Mc146818Rtc.IndexPort), Is.EqualTo(0xFFu));
            Assert.That(rtc.In(Mc146818Rtc.IndexPort, 2), Is.EqualTo(0xA5FFu), "a word read at 0x70 reads 0x70 and 0x71");
            Assert.That(rtc.In(Mc146818Rtc.DataPort, 2), Is.EqualTo(0xFFA5u), "0x72 is not the RTC's");
        });
        rtc.Out(Mc146818Rtc.IndexPort, 0x5A_51, size: 2); // index 0x51, then 0x5A into it
        Assert.That(Cmos(rtc, 0x51), Is.EqualTo(0x5Au));
    }

    [Test]
    public void TheClockAndTheCmosTravelInTheSavedState()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, 0x50, 0x77);
        SetCmos(rtc, 0x09, 0x28);
        var copy = new Mc146818Rtc(_clock, new DateTime(1990, 1, 1), 2u << 20);
        Assert.That(rtc.CopyStateTo(copy), Is.True);
        _clock.Now = 3 * Second;
        Assert.That(Date(copy), Is.EqualTo(Date(rtc)));
        Assert.That(Date(copy), Is.EqualTo("2028-03-01 00:00:01 w4"));
        Assert.That(Cmos(copy, 0x50), Is.EqualTo(0x77u));
        Assert.That(Cmos(copy, 0x34), Is.EqualTo(0x00u), "768 = 0x0300: low byte");
        Assert.That(Cmos(copy, 0x35), Is.EqualTo(0x03u));
    }

    /// <summary>
    /// Across a reset the clock runs on from the time the guest set, with its phase within the second, on the new
    /// machine's clock (a new partition's), and the CMOS RAM and alarm bytes are kept; the firmware then sets A and B.
    /// </summary>
    [Test]
    public void AfterAResetTheClockTheGuestSetRunsOnAndTheRamIsKept()
    {
        Mc146818Rtc before = NewRtc();
        _clock.Now = Second / 2;
        SetCmos(before, Mc146818Rtc.RegisterB, Mc146818Rtc.BSet | Mc146818Rtc.B24Hour | Mc146818Rtc.BDaylightSaving | Mc146818Rtc.BBinary);
        SetCmos(before, 4, 12);
        SetCmos(before, 2, 0);
        SetCmos(before, 0, 0);
        SetCmos(before, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour | Mc146818Rtc.BDaylightSaving | Mc146818Rtc.BUpdateEnable | Mc146818Rtc.BBinary); // runs from 12:00:00 at 0.5 s
        SetCmos(before, 0x01, 0x33); // the seconds alarm
        SetCmos(before, 0x48, 0x5A);
        SetCmos(before, Mc146818Rtc.RegisterA, 0x2F);
        _clock.Now = (3 * Second) + (7 * Second / 10); // 12:00:03.2

        var after = new Mc146818Rtc(new ManualClock { Now = 100 * Second }, Epoch, 64u << 20);
        after.ContinueAfterReset(before, _clock.Now, 100 * Second);
        Assert.Multiple(() =>
        {
            Assert.That(Cmos(after, Mc146818Rtc.RegisterB), Is.EqualTo((uint)(Mc146818Rtc.B24Hour | Mc146818Rtc.BDaylightSaving)), "POST: 24-hour BCD, DSE kept");
            Assert.That(Cmos(after, Mc146818Rtc.RegisterA) & 0x7F, Is.EqualTo(0x26u));
            Assert.That(Cmos(after, 4), Is.EqualTo(0x12u), "12 o'clock, now in BCD");
            Assert.That(Cmos(after, 0), Is.EqualTo(0x03u));
            Assert.That(Cmos(after, 0x01), Is.EqualTo(0x33u), "the alarm byte is battery-backed");
            Assert.That(Cmos(after, 0x48), Is.EqualTo(0x5Au));
        });
    }

    [Test]
    public void AClockStoppedBySetAtTheResetRunsAgainFromWhatWasSet()
    {
        Mc146818Rtc before = NewRtc();
        SetCmos(before, Mc146818Rtc.RegisterB, Mc146818Rtc.BSet | Mc146818Rtc.B24Hour);
        SetCmos(before, 2, 0x42);
        _clock.Now = 10 * Second; // frozen: still at what was set

        var clock = new ManualClock { Now = 5 * Second };
        var after = new Mc146818Rtc(clock, Epoch, 64u << 20);
        after.ContinueAfterReset(before, _clock.Now, clock.Now);
        Assert.That(Cmos(after, 2), Is.EqualTo(0x42u));
        Assert.That(Cmos(after, 0), Is.EqualTo(0x58u), "the epoch's seconds, as set");
        clock.Now += 2 * Second;
        Assert.That($"{Cmos(after, 2):x2}:{Cmos(after, 0):x2}", Is.EqualTo("43:00"), "running again: two seconds later");
    }
}
