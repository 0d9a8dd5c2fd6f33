using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// The 16550's interrupts as the PC16550D data sheet gives them ("Interrupt Identification Register", "Interrupt
/// Enable Register"): THRE pending when enabled with an empty holding register and after each byte, cleared by
/// reading IIR while it names THRE or by writing THR; received data outranks THRE; IER bits off lower the line.
/// </summary>
public class Uart16550InterruptTests
{
    private const ushort Thr = 0x3F8, Ier = 0x3F9, Iir = 0x3FA, Mcr = 0x3FC;


    private static (Uart16550 Uart, RecordingLine Line, List<byte> Sent) New()
    {
        var line = new RecordingLine();
        var sent = new List<byte>();
        return (new Uart16550(Uart16550.Com1Base, sent.Add, line), line, sent);
    }

    [Test]
    public void EnablingThreWithAnEmptyHoldingRegisterRaisesItAndReadingIirClearsIt()
    {
        (Uart16550 uart, RecordingLine line, _) = New();
        Assert.That(uart.In(Iir), Is.EqualTo(0x01u), "nothing pending at reset");
        uart.Out(Ier, 0x02);
        Assert.That(line.IsRaised, Is.True);
        Assert.That(uart.In(Iir), Is.EqualTo(0x02u), "THRE");
        Assert.That(line.IsRaised, Is.False, "reading IIR while it names THRE clears it");
        Assert.That(uart.In(Iir), Is.EqualTo(0x01u));
    }

    [Test]
    public void EachTransmittedByteMakesThrePendingAgainAndDisablingItLowersTheLine()
    {
        (Uart16550 uart, RecordingLine line, List<byte> sent) = New();
        uart.Out(Ier, 0x02);
        uart.In(Iir);
        uart.Out(Thr, (byte)'A');
        Assert.That((line.IsRaised, line.Raises, sent.Count), Is.EqualTo((true, 2, 1)));
        uart.Out(Ier, 0x00);
        Assert.That(line.IsRaised, Is.False, "IER off: no interrupt");
        Assert.That(uart.In(Iir), Is.EqualTo(0x01u));
        uart.Out(Ier, 0x02);
        Assert.That(uart.In(Iir), Is.EqualTo(0x02u), "still pending underneath, or pending again on enabling");
    }

    [Test]
    public void ReceivedDataOutranksThreAndIirWithFifosReportsThem()
    {
        (Uart16550 uart, RecordingLine line, _) = New();
        uart.Out(0x3FA, 0x01);           // FCR: FIFOs on
        uart.Out(Mcr, 0x10);             // loopback: a transmitted byte comes back as received data
        uart.Out(Ier, 0x03);
        uart.Out(Thr, 0x5A);
        Assert.That(uart.In(Iir), Is.EqualTo(0xC4u), "received data first, with the FIFO bits");
        Assert.That(uart.In(Thr), Is.EqualTo(0x5Au));
        Assert.That(uart.In(Iir), Is.EqualTo(0xC2u), "then THRE");
        Assert.That(line.IsRaised, Is.False);
    }

    [Test]
    public void APendingThreInterruptSurvivesASaveAndRestore()
    {
        (Uart16550 uart, _, _) = New();
        uart.Out(Ier, 0x02);
        (Uart16550 other, RecordingLine otherLine, _) = New();
        Assert.That(uart.CopyStateTo(other), Is.True);
        Assert.That(other.In(Iir), Is.EqualTo(0x02u));
        Assert.That(otherLine.IsRaised, Is.False, "cleared by that read");
    }
}
