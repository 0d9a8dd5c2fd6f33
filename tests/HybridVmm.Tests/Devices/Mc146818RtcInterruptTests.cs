using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Devices;

/// <summary>The RTC's IRQ 8: raised on a virtual-time timer for the events register B enables, until register C is read.</summary>
public class Mc146818RtcInterruptTests
{
    private const long Second = 1_000_000_000;

    // NUnit runs every test of a fixture on one instance: each test gets its own.
    private ManualClock _clock = new();
    private RecordingLine _line = new();
    private ManualTimer? _timer;

    [SetUp]
    public void NewFixtureState() => (_clock, _line, _timer) = (new ManualClock(), new RecordingLine(), null);

    private Mc146818Rtc NewRtc() => new(_clock, new DateTime(2024, 2, 29, 12, 0, 0), 64u << 20, 1, _line, onExpired => _timer = new ManualTimer(onExpired));

    private static void SetCmos(Mc146818Rtc rtc, byte index, byte value)
    {
        rtc.Out(Mc146818Rtc.IndexPort, index);
        rtc.Out(Mc146818Rtc.DataPort, value);
    }

    private static uint ReadC(Mc146818Rtc rtc)
    {
        rtc.Out(Mc146818Rtc.IndexPort, Mc146818Rtc.RegisterC);
        return rtc.In(Mc146818Rtc.DataPort);
    }

    /// <summary>What the worker does when the kernel stops the vCPU at the deadline.</summary>
    private void RunTo(long time)
    {
        _clock.Now = time;
        if (_timer!.Deadline is { } deadline && deadline <= time)
        {
            _timer.Deadline = null;
            _timer.OnExpired(time);
        }
    }

    [Test]
    public void NothingIsArmedWhileNoInterruptIsEnabled()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterA, 0x26);
        Assert.That(_timer!.Deadline, Is.Null);
        Assert.That(rtc.NextInterruptCheck, Is.Null);
    }

    [Test]
    public void TheUpdateInterruptRaisesIrq8AtTheNextSecondUntilRegisterCIsRead()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterA, 0x20); // no periodic flag
        _clock.Now = Second / 4;
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour | Mc146818Rtc.BUpdateEnable);
        Assert.That(_timer!.Deadline, Is.EqualTo(Second));
        RunTo(Second);
        Assert.Multiple(() =>
        {
            Assert.That(_line.Raises, Is.EqualTo(1));
            Assert.That(_line.IsRaised, Is.True);
            Assert.That(_timer.Deadline, Is.Null, "nothing more until the guest acknowledges");
        });
        Assert.That(ReadC(rtc), Is.EqualTo((uint)(Mc146818Rtc.CInterrupt | Mc146818Rtc.CUpdateEnded)));
        Assert.That(_line.IsRaised, Is.False);
        Assert.That(_timer.Deadline, Is.EqualTo(2 * Second), "the next update");
    }

    [Test]
    public void ThePeriodicInterruptFollowsTheRateOfRegisterA()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterA, 0x26); // 1024 Hz: 976,562.5 ns
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour | Mc146818Rtc.BPeriodicEnable);
        Assert.That(_timer!.Deadline, Is.EqualTo(976_563));
        RunTo(976_563);
        Assert.That(ReadC(rtc), Is.EqualTo((uint)(Mc146818Rtc.CInterrupt | Mc146818Rtc.CPeriodic)));
        Assert.That(_timer.Deadline, Is.EqualTo(1_953_125));
        SetCmos(rtc, Mc146818Rtc.RegisterA, 0x2F); // 2 Hz
        Assert.That(_timer.Deadline, Is.EqualTo(Second / 2));
    }

    [Test]
    public void TheAlarmInterruptComesOnlyAtTheMatchingSecond()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, 0x01, 0x02); // 12:00:02
        SetCmos(rtc, 0x03, 0x00);
        SetCmos(rtc, 0x05, 0x12);
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour | Mc146818Rtc.BAlarmEnable);
        RunTo(Second);
        Assert.That(_line.Raises, Is.Zero, "12:00:01 is not the alarm");
        RunTo(2 * Second);
        Assert.That(_line.Raises, Is.EqualTo(1));
        Assert.That(ReadC(rtc) & Mc146818Rtc.CAlarm, Is.EqualTo((uint)Mc146818Rtc.CAlarm));
    }

    [Test]
    public void DisablingTheInterruptCancelsTheTimer()
    {
        Mc146818Rtc rtc = NewRtc();
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour | Mc146818Rtc.BUpdateEnable);
        Assert.That(_timer!.Deadline, Is.Not.Null);
        SetCmos(rtc, Mc146818Rtc.RegisterB, Mc146818Rtc.B24Hour);
        Assert.That(_timer.Deadline, Is.Null);
    }

    /// <summary>
    /// A guest with a gate for IRQ 8's vector (0x70, where the firmware left the slave PIC) unmasks it on the slave,
    /// turns on the 8 kHz periodic interrupt, spins with interrupts enabled, and from its handler exits with register
    /// C: the interrupt came through the worker's timer, the PIC and the kernel's interrupt window, on virtual time.
    /// </summary>
    [Test]
    public async Task APeriodicInterruptReachesTheGuestOnIrq8sVectorAtTheSameTimeOnEveryRun()
    {
        (uint value, string[] trace) = await RunPeriodicGuest();
        (uint again, string[] traceAgain) = await RunPeriodicGuest();
        Assert.Multiple(() =>
        {
            Assert.That(value, Is.EqualTo((uint)(Mc146818Rtc.CInterrupt | Mc146818Rtc.CPeriodic)));
            Assert.That(trace.Count(l => l.Contains("device timer at 122071: 1 fired")), Is.EqualTo(1), "4 cycles of 32.768 kHz");
            Assert.That(trace.Count(l => l.Contains("pic acknowledge irq 8 vector=0x70")), Is.EqualTo(1));
            Assert.That(trace.Count(l => l.Contains("reply resume inject vector=0x70")), Is.EqualTo(1));
            Assert.That((again, traceAgain), Is.EqualTo((value, trace)));
        });
    }

    private static async Task<(uint Value, string[] Trace)> RunPeriodicGuest()
    {
        const int vector = 0x70;
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration
        {
            Name = "rtc", Image = FlatKernel.Wrap(PeriodicGuest(vector)), MemoryBytes = 4u << 20, Devices = new[] { "debug-exit", "rtc", "pic" },
            InstructionLimit = 1_000_000,
        });
        await machine.RunAsync();
        PartitionExit exit = await vm.Exited;
        Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
        return (exit.ExitValue, machine.TraceLines.ToArray());
    }

    private static byte[] PeriodicGuest(int vector)
    {
        ulong handler = Assemble(0, out _);
        Assemble(handler, out byte[] code);
        return code;

        ulong Assemble(ulong handlerAddress, out byte[] code)
        {
            var a = new Assembler(32);
            Label spin = a.CreateLabel();
            a.mov(esp, 0x90000);
            a.mov(eax, (uint)handlerAddress);                        // an interrupt gate at 0x20000 + vector * 8
            a.mov(__word_ptr[0x20000 + vector * 8], ax);
            a.mov(__word_ptr[0x20000 + vector * 8 + 2], cs);
            a.and(eax, unchecked((int)0xFFFF0000));
            a.or(eax, 0x8E00);
            a.mov(__dword_ptr[0x20000 + vector * 8 + 4], eax);
            a.mov(__dword_ptr[0x8000], 0x07FF0000);
            a.mov(__dword_ptr[0x8004], 0x20000);
            a.lidt(__[0x8002]);
            a.mov(al, 0x0A); a.@out(0x70, al); a.mov(al, 0x23); a.@out(0x71, al); // rate 3: 8192 Hz
            a.mov(al, 0x0B); a.@out(0x70, al); a.mov(al, 0x42); a.@out(0x71, al); // PIE, 24-hour
            a.sti();
            a.Label(ref spin);
            a.jmp(spin);
            a.mov(al, 0x0C); a.@out(0x70, al); a.@in(al, 0x71);               // the handler: read register C
            a.movzx(eax, al);
            a.@out(0xF4, eax);
            using var stream = new MemoryStream();
            AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), FlatKernel.Entry, BlockEncoderOptions.ReturnNewInstructionOffsets);
            code = stream.ToArray();
            return FlatKernel.Entry + result.Result[0].NewInstructionOffsets[^5];
        }
    }
}
