using HybridVmm.Hypervisor.Partitions;
using static HybridVmm.Tests.Apic.ApicGuest;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Apic;

/// <summary>
/// The APIC timer (Intel SDM Vol. 3A, 11.5.4) on virtual time: one-shot and periodic, the divide configuration, the
/// current count, and a halted vCPU woken at the deadline. Nothing here depends on the host's clock: the same guest
/// gives the same results and the same trace in every run.
/// </summary>
public class LocalApicTimerTests
{
    private const byte TimerVector = 0x40;

    [Test]
    public async Task AOneShotTimerWakesAHaltedVcpuOnceAndItsCountStaysAtZero()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, Divide, 0xB);                              // divide by 1
            Write(a, LvtTimer, TimerVector);                    // one-shot, unmasked
            Write(a, InitialCount, 200_000);
            a.sti(); a.hlt(); a.cli();                          // woken by the timer
            Save(a, CurrentCount, 0);
            a.mov(ecx, 100_000); var spin = a.CreateLabel(); a.Label(ref spin); a.dec(ecx); a.jnz(spin);
            Save(a, CurrentCount, 1);
            Save(a, InitialCount, 2);
            Exit(a);
        }, [TimerVector], eoiVectors: [TimerVector]));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(run.Log.Select(e => e.Vector), Is.EqualTo(new uint[] { TimerVector }), "one interrupt, even after 200,000 more ticks");
            Assert.That(run.Results[0..3], Is.EqualTo(new uint[] { 0, 0, 200_000 }));
        });
    }

    [Test]
    public async Task APeriodicTimerInterruptsEveryPeriodAndItsCountRunsFromTheInitialCountDown()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, Divide, 0xB);
            Write(a, LvtTimer, TimerVector | (1 << 17));        // periodic
            Write(a, InitialCount, 50_000);
            a.sti();
            for (int i = 0; i < 4; i++) { a.hlt(); Save(a, CurrentCount, i); }
            a.cli();
            Write(a, LvtTimer, TimerVector | (1 << 16) | (1 << 17)); // masked, still periodic: no more interrupts, the count runs on
            a.mov(ecx, 200_000); var spin = a.CreateLabel(); a.Label(ref spin); a.dec(ecx); a.jnz(spin);
            Save(a, CurrentCount, 4);
            Exit(a);
        }, [TimerVector], eoiVectors: [TimerVector]));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(run.Log, Has.Length.EqualTo(4));
            for (int i = 0; i < 5; i++)
            {
                Assert.That(run.Results[i], Is.InRange(1u, 50_000u), $"reading {i}: a periodic count never reads 0");
            }

            Assert.That(run.Results[0], Is.GreaterThan(40_000u), "read just after the wake-up at the period's start");
        });
    }

    [Test]
    public async Task TheDivideConfigurationSlowsTheCountByItsFactor()
    {
        // The same instructions (and intercepts) run between loading the count and reading it under each divisor,
        // so the elapsed virtual time d is the same: the count drops by d, d/2, ..., d/128 (rounded down).
        uint[] configurations = [0xB, 0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA];
        Run run = await RunAsync(Build(a =>
        {
            Write(a, LvtTimer, TimerVector | (1 << 16));        // masked: counting without interrupts
            for (int i = 0; i < configurations.Length; i++)
            {
                Write(a, Divide, configurations[i]);
                Write(a, InitialCount, 0x1000_0000);
                a.mov(ecx, 5_000); var spin = a.CreateLabel(); a.Label(ref spin); a.dec(ecx); a.jnz(spin);
                Save(a, CurrentCount, i);
            }

            Exit(a);
        }, []));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        uint elapsed = 0x1000_0000 - run.Results[0];
        Assert.That(elapsed, Is.GreaterThan(10_000u), "divide by 1: one count per virtual tick (1 GHz)");
        uint[] expected = [.. Enumerable.Range(0, 8).Select(k => 0x1000_0000 - (elapsed >> k))];
        Assert.That(run.Results[..8], Is.EqualTo(expected), "divide by 1, 2, 4, 8, 16, 32, 64, 128");
    }

    [Test]
    public async Task TheSameTimerGuestGivesTheSameTraceInEveryRun()
    {
        byte[] image = Build(a =>
        {
            Write(a, Divide, 0x3);                              // divide by 16
            Write(a, LvtTimer, TimerVector | (1 << 17));
            Write(a, InitialCount, 3_000);
            a.sti();
            for (int i = 0; i < 3; i++) { a.hlt(); Save(a, CurrentCount, i); }
            Exit(a);
        }, [TimerVector], eoiVectors: [TimerVector]);

        Run first = await RunAsync(image), second = await RunAsync(image);
        Assert.That(first.Exit.Reason, Is.EqualTo(StopReason.GuestExit), first.Exit.Diagnostic);
        Assert.That(second.Trace, Is.EqualTo(first.Trace));
        Assert.That(second.Results, Is.EqualTo(first.Results));
    }
}
