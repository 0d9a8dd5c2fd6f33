using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Devices;

public class Uart16550Tests
{
    private readonly List<byte> _sent = new();

    private Uart16550 NewUart() => new(Uart16550.Com1Base, _sent.Add);

    [Test]
    public void ThrWritesAreTransmitted()
    {
        Uart16550 uart = NewUart();
        uart.Write(0x3F8, 1, 'A');
        uart.Write(0x3F8, 1, 'b');
        Assert.That(_sent, Is.EqualTo(new byte[] { (byte)'A', (byte)'b' }));
    }

    [Test]
    public void DivisorLatchWritesProgramTheBaudRateAndPrintNothing()
    {
        Uart16550 uart = NewUart();
        uart.Write(0x3FB, 1, 0x80); // DLAB
        uart.Write(0x3F8, 1, 0x01); // DLL
        uart.Write(0x3F9, 1, 0x00); // DLM
        uart.Write(0x3FB, 1, 0x03); // 8N1, DLAB off
        Assert.Multiple(() =>
        {
            Assert.That(_sent, Is.Empty);
            Assert.That(uart.Divisor, Is.EqualTo(1));
            Assert.That(uart.Read(0x3FB, 1).Value, Is.EqualTo(0x03));
        });
    }

    [Test]
    public void LineStatusReportsAnEmptyTransmitter() =>
        Assert.That(NewUart().Read(0x3FD, 1).Value & 0x60, Is.EqualTo(0x60u));

    [Test]
    public void InterruptIdentificationShowsNoInterruptAndFifoState()
    {
        Uart16550 uart = NewUart();
        Assert.That(uart.Read(0x3FA, 1).Value, Is.EqualTo(0x01u));
        uart.Write(0x3FA, 1, 0x07); // enable and clear FIFOs
        Assert.That(uart.Read(0x3FA, 1).Value, Is.EqualTo(0xC1u));
    }

    [Test]
    public void ScratchAndInterruptEnableRegistersHoldTheirValues()
    {
        Uart16550 uart = NewUart();
        uart.Write(0x3FF, 1, 0x5A);
        uart.Write(0x3F9, 1, 0xFF);
        Assert.That(uart.Read(0x3FF, 1).Value, Is.EqualTo(0x5Au));
        Assert.That(uart.Read(0x3F9, 1).Value, Is.EqualTo(0x0Fu), "IER keeps only its four defined bits");
    }

    [Test]
    public void LoopbackReturnsTransmittedBytesAsReceivedDataInsteadOfPrinting()
    {
        Uart16550 uart = NewUart();
        uart.Write(0x3FC, 1, 0x10 | 0x03); // LOOP | RTS | DTR
        uart.Write(0x3F8, 1, 0xAE);
        Assert.Multiple(() =>
        {
            Assert.That(_sent, Is.Empty);
            Assert.That(uart.Read(0x3FD, 1).Value & 1, Is.EqualTo(1u), "data ready");
            Assert.That(uart.Read(0x3F8, 1).Value, Is.EqualTo(0xAEu));
            Assert.That(uart.Read(0x3FE, 1).Value, Is.EqualTo(0x30u), "RTS->CTS and DTR->DSR in loopback");
        });
    }

    [Test]
    public void DebugExitWriteEndsTheGuestWithTheWrittenValue()
    {
        var control = new RecordingControl();
        IoResult result = new DebugExitDevice(control).Write(0xF4, 4, 0x2A);
        Assert.That((result.Status, control.Requests.Single()), Is.EqualTo((IoStatus.Ok, "exit 0x2a")));
    }

    [Test]
    public async Task AGuestProgrammingTheUartThroughTheHostPartitionPrintsOnlyItsData()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(dx, 0x3FB); a.mov(al, 0x80); a.@out(dx, al);   // DLAB on
            a.mov(dx, 0x3F8); a.mov(al, 0x0C); a.@out(dx, al);   // DLL = 12 (9600 baud) must not print
            a.mov(dx, 0x3FB); a.mov(al, 0x03); a.@out(dx, al);   // 8N1
            Label wait = a.CreateLabel();
            a.Label(ref wait);
            a.mov(dx, 0x3FD); a.@in(al, dx); a.test(al, 0x20); a.jz(wait);
            a.mov(dx, 0x3F8); a.mov(al, (byte)'O'); a.@out(dx, al);
            a.mov(al, (byte)'K'); a.@out(dx, al);
            a.mov(eax, 7); a.@out(0xF4, eax);
            a.hlt();
        });
        (string output, PartitionExit exit, _, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(output, Is.EqualTo("OK"));
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(exit.ExitValue, Is.EqualTo(7u));
        }
    }

    private sealed class RecordingControl : IVmControl
    {
        public List<string> Requests { get; } = new();

        public void SignalGuestExit(uint value) => Requests.Add($"exit 0x{value:x}");

        public void RequestPause() => Requests.Add("pause");

        public void RequestPowerOff() => Requests.Add("power-off");

        public void RequestReset() => Requests.Add("reset");
    }
}
