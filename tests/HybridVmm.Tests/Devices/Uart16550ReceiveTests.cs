using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// The 16550's receiver after the PC16550D data sheet ("FIFO Interrupt Mode Operation", "Line Status Register",
/// "Interrupt Identification Register") and QEMU's hw/char/serial.c: the 16-byte FIFO and its trigger levels, the
/// character timeout, overruns, the 16450's single holding register with FIFOs off, and IIR's priorities.
/// </summary>
public class Uart16550ReceiveTests
{
    private const ushort Rbr = 0x3F8, Ier = 0x3F9, Iir = 0x3FA, Fcr = 0x3FA, Lsr = 0x3FD, Mcr = 0x3FC;

    private static void Receive(Uart16550 uart, string text)
    {
        foreach (char c in text) uart.Receive((byte)c);
    }

    private static string ReadAll(Uart16550 uart)
    {
        var text = new System.Text.StringBuilder();
        while ((uart.In(Lsr) & 0x01) != 0) text.Append((char)uart.In(Rbr));
        return text.ToString();
    }

    [Test]
    public void TheFifoHoldsSixteenBytesAndASeventeenthIsLostWithAnOverrunThatReadingLsrClears()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.Out(Fcr, 0x01);
        Receive(uart, "0123456789abcdefX");
        Assert.That(uart.In(Lsr), Is.EqualTo(0x63u), "DR | OE | THRE | TEMT");
        Assert.That(uart.In(Lsr), Is.EqualTo(0x61u), "reading LSR cleared OE");
        Assert.That(ReadAll(uart), Is.EqualTo("0123456789abcdef"), "the FIFO keeps its bytes; the new one is lost");
        Assert.That((uart.In(Lsr), uart.In(Rbr)), Is.EqualTo((0x60u, 0u)), "empty: no DR, RBR reads 0");
    }

    [Test]
    public void WithFifosOffANewByteOverwritesTheHoldingRegisterAndOverruns()
    {
        Uart16550 uart = new UartBench().Uart;
        Receive(uart, "ab");
        Assert.That(uart.In(Lsr), Is.EqualTo(0x63u));
        Assert.That(ReadAll(uart), Is.EqualTo("b"), "the 16450's holding register takes the newer byte");
    }

    [TestCase(0x01, 1)]
    [TestCase(0x41, 4)]
    [TestCase(0x81, 8)]
    [TestCase(0xC1, 14)]
    public void ReceivedDataIsPendingOnceTheFifoReachesItsTriggerLevel(int fcr, int trigger)
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.Out(Fcr, (uint)fcr);
        uart.Out(Ier, 0x01);
        Receive(uart, new string('x', trigger - 1));
        Assert.That((uart.In(Iir), bench.Line.IsRaised), Is.EqualTo((0xC1u, false)), "below the trigger level");
        uart.Receive((byte)'y');
        Assert.That((uart.In(Iir), bench.Line.IsRaised), Is.EqualTo((0xC4u, true)), "at the trigger level");
        ReadAll(uart);
        Assert.That((uart.In(Iir), bench.Line.IsRaised), Is.EqualTo((0xC1u, false)), "read empty");
    }

    [Test]
    public void BytesBelowTheTriggerLevelInterruptAfterFourCharacterTimesWithoutNewBytesOrReads()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.Out(Fcr, 0x81); // 8-byte trigger, as Linux's 8250 driver sets a 16550A
        uart.Out(Ier, 0x01);
        long character = uart.CharacterTicks;
        Receive(uart, "ls\n");
        bench.AdvanceBy(4 * character - 1);
        Assert.That((uart.In(Iir), bench.Line.IsRaised), Is.EqualTo((0xC1u, false)), "not yet four character times");
        bench.AdvanceBy(1);
        Assert.That((uart.In(Iir), bench.Line.IsRaised), Is.EqualTo((0xCCu, true)), "character timeout");
        Assert.That(uart.In(Rbr), Is.EqualTo((uint)'l'));
        Assert.That((uart.In(Iir), bench.Line.IsRaised), Is.EqualTo((0xC1u, false)), "a read ends the timeout and restarts its timer");
        bench.AdvanceBy(4 * character);
        Assert.That(uart.In(Iir), Is.EqualTo(0xCCu), "the two bytes left time out again");
        Assert.That(ReadAll(uart), Is.EqualTo("s\n"));
        bench.AdvanceBy(10 * character);
        Assert.That((uart.In(Iir), bench.NextDeadline), Is.EqualTo((0xC1u, (long?)null)), "an empty FIFO has no timeout");
    }

    [Test]
    public void ANewByteRestartsTheCharacterTimeout()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.Out(Fcr, 0x81);
        uart.Out(Ier, 0x01);
        long character = uart.CharacterTicks;
        uart.Receive((byte)'a');
        bench.AdvanceBy(3 * character);
        uart.Receive((byte)'b');
        bench.AdvanceBy(3 * character);
        Assert.That(uart.In(Iir), Is.EqualTo(0xC1u));
        bench.AdvanceBy(character);
        Assert.That(uart.In(Iir), Is.EqualTo(0xCCu));
    }

    [Test]
    public void IirOrdersAnOverrunBeforeATimeoutBeforeThre()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.Out(Fcr, 0xC1);
        uart.Out(Ier, 0x07); // line status, THRE, received data
        Receive(uart, "0123456789abcdefX");
        bench.AdvanceBy(4 * uart.CharacterTicks);
        Assert.That(uart.In(Iir), Is.EqualTo(0xC6u), "receiver line status: the overrun");
        uart.In(Lsr);
        Assert.That(uart.In(Iir), Is.EqualTo(0xCCu), "then the character timeout");
        ReadAll(uart);
        Assert.That(uart.In(Iir), Is.EqualTo(0xC2u), "then THRE, pending since IER enabled it");
        Assert.That(uart.In(Iir), Is.EqualTo(0xC1u));
        Assert.That(bench.Line.IsRaised, Is.False);
    }

    [Test]
    public void FifoControlEmptiesTheReceiverWhenAskedOrWhenFifosAreSwitched()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.Out(Fcr, 0x01);
        Receive(uart, "abc");
        uart.Out(Fcr, 0x03); // receive FIFO reset
        Assert.That(uart.ReceivedCount, Is.Zero);
        Receive(uart, "abc");
        uart.Out(Fcr, 0x01); // same mode, no reset bit
        Assert.That(uart.ReceivedCount, Is.EqualTo(3));
        uart.Out(Fcr, 0x00); // FIFOs off: both are emptied
        Assert.That((uart.ReceivedCount, uart.In(Iir)), Is.EqualTo((0, 0x01u)));
        Assert.That(bench.NextDeadline, Is.Null, "no timeout left armed");
    }

    [Test]
    public void LoopbackFillsTheFifoAndOverrunsItLikeTheLine()
    {
        Uart16550 uart = new UartBench().Uart;
        uart.Out(Fcr, 0x01);
        uart.Out(Mcr, 0x10);
        for (int i = 0; i < 20; i++) uart.Out(Rbr, (uint)('a' + i));
        Assert.That(uart.In(Lsr) & 0x03, Is.EqualTo(0x03u));
        Assert.That(ReadAll(uart), Is.EqualTo("abcdefghijklmnop"));
    }

    [TestCase(12, 0x03, 1_041_666)]   // 9600 8N1: 10 bits
    [TestCase(1, 0x03, 86_805)]       // 115200 8N1
    [TestCase(1, 0x1E, 95_486)]       // 115200, 7 data bits, even parity, 2 stop bits: 11 bits
    [TestCase(0, 0x00, 60_763)]       // divisor 0 counts as 1; 5N1: 7 bits
    public void ACharacterTakesItsBitsAtTheProgrammedBaudRate(int divisor, int lcr, long ticks)
    {
        Uart16550 uart = new UartBench().Uart;
        uart.Out(0x3FB, 0x80);
        uart.Out(0x3F8, (uint)(divisor & 0xFF));
        uart.Out(0x3F9, (uint)(divisor >> 8));
        uart.Out(0x3FB, (uint)lcr);
        Assert.That(uart.CharacterTicks, Is.EqualTo(ticks));
    }

    [Test]
    public void ASnapshotTakenMidFifoRestoresItsBytesOverrunAndTimeout()
    {
        var bench = new UartBench();
        Uart16550 uart = bench.Uart;
        uart.Out(Fcr, 0x81);
        uart.Out(Ier, 0x05);
        Receive(uart, "0123456789abcdefXY");
        uart.In(Rbr);
        uart.In(Rbr);
        bench.AdvanceBy(4 * uart.CharacterTicks);
        SavedStateChunk chunk = ((IPersistentState)uart).SaveChunk("device.com1")!;
        Assert.That(chunk.Version, Is.EqualTo(3));

        var other = new UartBench();
        Assert.That(((IPersistentState)other.Uart).RestoreChunk(chunk), Is.True);
        Assert.That(other.Uart.In(Iir), Is.EqualTo(0xC6u), "the overrun, with line-status interrupts enabled");
        Assert.That(other.Uart.In(Lsr), Is.EqualTo(0x63u));
        Assert.That(other.Uart.In(Iir), Is.EqualTo(0xCCu), "the timeout that was pending");
        Assert.That(ReadAll(other.Uart), Is.EqualTo("23456789abcdef"));
    }

    [Test]
    public void AnOlderChunkWithMoreBytesThanTheFifoHoldsKeepsTheFirstSixteenAndAnOverrun()
    {
        // Version 2: IER, LCR, MCR, SCR, FCR, DLL, DLM, THRE pending, then the received bytes (a loopback queue of 20).
        byte[] payload = [0x00, 0x03, 0x00, 0x00, 0x01, 0x0C, 0x00, 0x00, .. "ABCDEFGHIJKLMNOPQRST"u8];
        Uart16550 uart = new UartBench().Uart;
        Assert.That(((IPersistentState)uart).RestoreChunk(new SavedStateChunk("device.com1", 2, payload)), Is.True);
        Assert.That(uart.In(Lsr), Is.EqualTo(0x63u));
        Assert.That(ReadAll(uart), Is.EqualTo("ABCDEFGHIJKLMNOP"));
    }
}
