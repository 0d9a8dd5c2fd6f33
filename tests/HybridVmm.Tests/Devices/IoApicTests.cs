using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// The I/O APIC (Intel 82093AA data sheet; SDM Vol. 3A, 11.11 for the message format): its registers through IOREGSEL
/// and IOWIN, and the messages edge- and level-triggered inputs send. Linux's boot through it is checked against QEMU
/// by <c>DebianLinuxTests</c>.
/// </summary>
public class IoApicTests
{
    private const uint Select = IoApic.BaseAddress, Window = IoApic.BaseAddress + 0x10;

    private readonly List<(uint Address, uint Data)> _sent = [];

    [SetUp]
    public void ForgetMessages() => _sent.Clear();

    private IoApic Create(byte id = 1) => new(id, (address, data) => _sent.Add((address, data)));

    private static uint ReadRegister(IoApic ioapic, byte index)
    {
        ioapic.Write(Select, 4, index);
        return ioapic.Read(Window, 4).Value;
    }

    private static void WriteRegister(IoApic ioapic, byte index, uint value)
    {
        ioapic.Write(Select, 4, index);
        ioapic.Write(Window, 4, value);
    }

    private static void Program(IoApic ioapic, int input, uint low, byte destination = 0)
    {
        WriteRegister(ioapic, (byte)(0x11 + 2 * input), (uint)destination << 24);
        WriteRegister(ioapic, (byte)(0x10 + 2 * input), low);
    }

    [Test]
    public void TheIdVersionAndArbitrationRegistersAndEveryEntryPowersOnMasked()
    {
        IoApic ioapic = Create(id: 3);
        Assert.Multiple(() =>
        {
            Assert.That(ReadRegister(ioapic, 0), Is.EqualTo(3u << 24));
            Assert.That(ReadRegister(ioapic, 1), Is.EqualTo(0x0017_0011u), "version 0x11, 24 entries (maximum redirection entry 23)");
            Assert.That(ReadRegister(ioapic, 2), Is.EqualTo(3u << 24));
            for (int input = 0; input < IoApic.Inputs; input++)
            {
                Assert.That(ReadRegister(ioapic, (byte)(0x10 + 2 * input)), Is.EqualTo(0x0001_0000u), $"entry {input} low: masked");
                Assert.That(ReadRegister(ioapic, (byte)(0x11 + 2 * input)), Is.Zero);
            }
        });
        WriteRegister(ioapic, 0, 0x0A00_0000);
        Assert.That(ReadRegister(ioapic, 0), Is.EqualTo(0x0A00_0000u), "the ID is writable (bits 27:24)");
    }

    [Test]
    public void AnEdgeTriggeredInputSendsOneMessagePerRisingEdgeAndIrqZeroReachesInputTwo()
    {
        IoApic ioapic = Create();
        Program(ioapic, 2, 0x30);             // the PIT's input: fixed, physical, edge, vector 0x30
        Program(ioapic, 4, 0x0934, destination: 0x01); // lowest priority (1), logical (bit 11), vector 0x34
        ioapic.SetIrq(0, true);
        ioapic.SetIrq(0, true);               // still high: no edge
        ioapic.SetIrq(0, false);
        ioapic.SetIrq(0, true);
        ioapic.SetIrq(4, true);
        Assert.That(_sent, Is.EqualTo(new[]
        {
            (0xFEE0_0000u, 0x4030u), (0xFEE0_0000u, 0x4030u),
            (0xFEE0_1004u, 0x4134u),           // destination 1 in bits 19:12, logical in bit 2; delivery mode 1 in bits 10:8
        }));
    }

    [Test]
    public void AnEdgeOnAMaskedInputIsLost()
    {
        IoApic ioapic = Create();
        Program(ioapic, 4, 0x1_0034);         // masked
        ioapic.SetIrq(4, true);
        Program(ioapic, 4, 0x34);             // unmasked while the line stays high
        Assert.That(_sent, Is.Empty, "82093AA: an edge on a masked input is neither delivered nor held");
        ioapic.SetIrq(4, false);
        ioapic.SetIrq(4, true);
        Assert.That(_sent, Has.Count.EqualTo(1));
    }

    [Test]
    public void ALevelTriggeredInputSendsAgainAfterTheEoiOnlyWhileStillAsserted()
    {
        IoApic ioapic = Create();
        Program(ioapic, 9, 0x8039);           // level-triggered, vector 0x39
        ioapic.SetIrq(9, true);
        Assert.That(_sent, Is.EqualTo(new[] { (0xFEE0_0000u, 0xC039u) }), "level assert: trigger bit 15 and level bit 14");
        Assert.That(ReadRegister(ioapic, 0x10 + 18) & (1u << 14), Is.Not.Zero, "remote IRR is set until the EOI");

        ioapic.SetIrq(9, true);
        ioapic.EndOfInterrupt(0x41);          // another vector's EOI changes nothing
        Assert.That(_sent, Has.Count.EqualTo(1));

        ioapic.EndOfInterrupt(0x39);          // still asserted: sent again
        Assert.That(_sent, Has.Count.EqualTo(2));

        ioapic.SetIrq(9, false);
        ioapic.EndOfInterrupt(0x39);
        Assert.That(_sent, Has.Count.EqualTo(2), "deasserted before the EOI: nothing more");
        Assert.That(ReadRegister(ioapic, 0x10 + 18) & (1u << 14), Is.Zero);
    }

    [Test]
    public void UnmaskingAnAssertedLevelTriggeredInputSendsIt()
    {
        IoApic ioapic = Create();
        Program(ioapic, 9, 0x1_8039);
        ioapic.SetIrq(9, true);
        Assert.That(_sent, Is.Empty);
        Program(ioapic, 9, 0x8039);
        Assert.That(_sent, Has.Count.EqualTo(1));
    }

    [Test]
    public void DeliveryStatusAndRemoteIrrAreReadOnly()
    {
        IoApic ioapic = Create();
        Program(ioapic, 5, 0x0001_FFFF);
        Assert.That(ReadRegister(ioapic, 0x10 + 10), Is.EqualTo(0x0001_AFFFu));
    }

    [Test]
    public void ItsSavedStateRestoresEntriesLevelsAndRemoteIrr()
    {
        IoApic ioapic = Create();
        Program(ioapic, 9, 0x8039, destination: 2);
        ioapic.SetIrq(9, true);
        ioapic.Write(Select, 4, 0x22); // input 9's low dword

        IoApic copy = Create();
        Assert.That(ioapic.CopyStateTo(copy), Is.True);
        Assert.That(copy.Read(Window, 4).Value, Is.EqualTo(0xC039u), "IOREGSEL, the entry and its remote IRR kept");
        _sent.Clear();
        copy.EndOfInterrupt(0x39);
        Assert.That(_sent, Is.EqualTo(new[] { (0xFEE0_2000u, 0xC039u) }), "the copy knows the line is high and remote IRR set");
    }
}
