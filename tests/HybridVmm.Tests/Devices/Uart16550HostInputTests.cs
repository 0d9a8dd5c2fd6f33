using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// Host input reaching COM1 on virtual time: one byte per character time while the guest asserts RTS, has room and is
/// not in loopback; a deterministic source that ends stops the timer, an interactive one that has nothing is asked
/// again a poll interval later.
/// </summary>
public class Uart16550HostInputTests
{
    private const ushort Rbr = 0x3F8, Ier = 0x3F9, Fcr = 0x3FA, Mcr = 0x3FC, Lsr = 0x3FD;

    [Test]
    public void NothingArrivesUntilTheGuestRaisesRtsThenOneByteEachCharacterTime()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        var input = new ScriptedInput().Type("hi!");
        uart.ConnectInput(input);
        uart.Out(Fcr, 0x01);
        uart.Out(Mcr, 0x09); // DTR | OUT2: not ready to receive
        bench.AdvanceBy(100 * uart.CharacterTicks);
        Assert.That((uart.ReceivedCount, input.Reads), Is.EqualTo((0, 0)));

        long character = uart.CharacterTicks;
        long rts = bench.Clock.Now;
        uart.Out(Mcr, 0x0B); // RTS
        bench.AdvanceTo(rts + character - 1);
        Assert.That(uart.ReceivedCount, Is.Zero, "the first byte takes a character time on the line");
        bench.AdvanceTo(rts + character);
        Assert.That(uart.ReceivedCount, Is.EqualTo(1));
        bench.AdvanceTo(rts + 3 * character);
        Assert.That(uart.ReceivedCount, Is.EqualTo(3));
        Assert.That((uart.In(Rbr), uart.In(Rbr), uart.In(Rbr)), Is.EqualTo(((uint)'h', (uint)'i', (uint)'!')));
        bench.AdvanceBy(10 * character);
        Assert.That((input.Reads, bench.NextDeadline), Is.EqualTo((4, (long?)null)), "the end was read once; no timer is left");
    }

    [Test]
    public void TheHostStopsAtAFullFifoAndGoesOnOnceTheGuestReads()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.ConnectInput(new ScriptedInput().Type("0123456789abcdefghij"));
        uart.Out(Fcr, 0x01);
        uart.Out(Mcr, 0x03);
        bench.AdvanceBy(40 * uart.CharacterTicks);
        Assert.That((uart.ReceivedCount, uart.In(Lsr) & 0x02), Is.EqualTo((16, 0u)), "full, and never overrun by the host");
        uart.In(Rbr);
        bench.AdvanceBy(40 * uart.CharacterTicks);
        Assert.That(uart.ReceivedCount, Is.EqualTo(16), "one read made room for one byte");
    }

    [Test]
    public void WithFifosOffTheHostWaitsForEachByteToBeRead()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.ConnectInput(new ScriptedInput().Type("ab"));
        uart.Out(Mcr, 0x03);
        bench.AdvanceBy(10 * uart.CharacterTicks);
        Assert.That((uart.In(Lsr), uart.In(Rbr)), Is.EqualTo((0x61u, (uint)'a')), "no overrun");
        bench.AdvanceBy(uart.CharacterTicks);
        Assert.That(uart.In(Rbr), Is.EqualTo((uint)'b'));
    }

    [Test]
    public void LoopbackDisconnectsTheHost()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        var input = new ScriptedInput().Type("x");
        uart.ConnectInput(input);
        uart.Out(Mcr, 0x12); // RTS in loopback
        bench.AdvanceBy(10 * uart.CharacterTicks);
        Assert.That((uart.ReceivedCount, input.Reads), Is.EqualTo((0, 0)));
        uart.Out(Mcr, 0x02);
        bench.AdvanceBy(uart.CharacterTicks);
        Assert.That(uart.In(Rbr), Is.EqualTo((uint)'x'));
    }

    [Test]
    public void AnInteractiveSourceWithNothingTypedIsAskedAgainEachPollInterval()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        var keyboard = new ScriptedInput(interactive: true);
        uart.ConnectInput(keyboard);
        uart.Out(0x3FB, 0x03); // 8N1 at the reset divisor, 9600 baud
        uart.Out(Mcr, 0x03);
        long start = bench.Clock.Now;
        bench.AdvanceTo(start + uart.CharacterTicks + 3 * uart.PollTicks);
        Assert.That(keyboard.Reads, Is.EqualTo(4));
        keyboard.Type("k");
        bench.AdvanceBy(uart.PollTicks);
        Assert.That(uart.In(Rbr), Is.EqualTo((uint)'k'));
        Assert.That(uart.PollTicks, Is.EqualTo(10_000_000), "10 ms: more than a character time at 9600 baud");
    }

    [Test]
    public void ReceivedBytesRaiseTheInterruptTheGuestEnabled()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.ConnectInput(new ScriptedInput().Type("ls\n"));
        uart.Out(Fcr, 0x81);
        uart.Out(Ier, 0x01);
        uart.Out(Mcr, 0x0B);
        bench.AdvanceBy(3 * uart.CharacterTicks);
        Assert.That(bench.Line.IsRaised, Is.False, "three bytes, below the trigger level of 8");
        bench.AdvanceBy(4 * uart.CharacterTicks);
        Assert.That((bench.Line.IsRaised, uart.In(0x3FA)), Is.EqualTo((true, 0xCCu)), "the character timeout");
    }

    [Test]
    public void AUartWithoutTimersCannotTakeHostInput() =>
        Assert.That(() => new Uart16550(Uart16550.Com1Base, _ => { }).ConnectInput(new ScriptedInput()), Throws.InvalidOperationException);
}
