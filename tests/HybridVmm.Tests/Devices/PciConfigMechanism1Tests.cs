using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

public class PciConfigMechanism1Tests
{
    // NUnit runs every test of a fixture on one instance: each test gets its own.
    private CountingControl _control = new();

    [SetUp]
    public void NewFixtureState() => _control = new();

    private PciConfigMechanism1 NewPci() => new(_control);

    private static uint ReadConfig(PciConfigMechanism1 pci, uint bus, uint device, uint function, uint register)
    {
        pci.Out(PciConfigMechanism1.AddressPort, PciConfigMechanism1.EnableBit | bus << 16 | device << 11 | function << 8 | register, size: 4);
        return pci.In(PciConfigMechanism1.DataPort, 4);
    }

    [Test]
    public void TheHostBridgeIsAnI440fxAtZeroZeroZero()
    {
        PciConfigMechanism1 pci = NewPci();
        Assert.Multiple(() =>
        {
            Assert.That(ReadConfig(pci, 0, 0, 0, 0x00), Is.EqualTo(0x1237_8086u));
            Assert.That(ReadConfig(pci, 0, 0, 0, 0x04), Is.EqualTo(0x0000_0103u));
            Assert.That(ReadConfig(pci, 0, 0, 0, 0x08), Is.EqualTo(0x0600_0002u), "class 06 00 00, revision 2");
            Assert.That(ReadConfig(pci, 0, 0, 0, 0x0C), Is.Zero, "header type 0");
            Assert.That(ReadConfig(pci, 0, 0, 0, 0x2C), Is.EqualTo(0x1100_1AF4u));
        });
    }

    [TestCase(0u, 1u, 0u)]
    [TestCase(0u, 31u, 7u)]
    [TestCase(0u, 0u, 1u)]
    [TestCase(1u, 0u, 0u)]
    [TestCase(255u, 0u, 0u)]
    public void AnUnpopulatedFunctionReadsAllOnesAndIgnoresWrites(uint bus, uint device, uint function)
    {
        PciConfigMechanism1 pci = NewPci();
        Assert.That(ReadConfig(pci, bus, device, function, 0), Is.EqualTo(0xFFFF_FFFFu));
        pci.Out(PciConfigMechanism1.DataPort + 2, 0x1234, size: 2);
        Assert.That(pci.In(PciConfigMechanism1.DataPort, 4), Is.EqualTo(0xFFFF_FFFFu));
        Assert.That(ReadConfig(pci, 0, 0, 0, 0x40), Is.Zero, "the write reached nothing");
    }

    [Test]
    public void WithTheEnableBitClearTheDataWindowReadsAllOnes()
    {
        PciConfigMechanism1 pci = NewPci();
        pci.Out(PciConfigMechanism1.AddressPort, 0, size: 4);
        Assert.That(pci.In(PciConfigMechanism1.DataPort, 4), Is.EqualTo(0xFFFF_FFFFu));
        Assert.That(pci.In(PciConfigMechanism1.AddressPort, 4), Is.Zero);
    }

    [Test]
    public void TheDataWindowServesAnyWidthAtAnyOffset()
    {
        PciConfigMechanism1 pci = NewPci();
        ReadConfig(pci, 0, 0, 0, 0);
        Assert.Multiple(() =>
        {
            Assert.That(pci.In(PciConfigMechanism1.DataPort + 1), Is.EqualTo(0x80u));
            Assert.That(pci.In(PciConfigMechanism1.DataPort + 3), Is.EqualTo(0x12u));
            Assert.That(pci.In(PciConfigMechanism1.DataPort + 2, 2), Is.EqualTo(0x1237u));
            Assert.That(pci.In(PciConfigMechanism1.DataPort + 1, 2), Is.EqualTo(0x3780u));
            Assert.That(pci.In(PciConfigMechanism1.DataPort + 2, 4), Is.EqualTo(0xFFFF_1237u), "bytes beyond 0xCFF reach no port");
        });
    }

    [Test]
    public void OnlyTheWritableCommandBitsAndTheChipsetRegistersChange()
    {
        PciConfigMechanism1 pci = NewPci();
        ReadConfig(pci, 0, 0, 0, 0x04);
        pci.Out(PciConfigMechanism1.DataPort, 0xFFFF_FFFF, size: 4);
        Assert.That(pci.In(PciConfigMechanism1.DataPort, 4), Is.EqualTo(0x0000_0507u), "status has nothing to clear");
        ReadConfig(pci, 0, 0, 0, 0x00);
        pci.Out(PciConfigMechanism1.DataPort, 0, size: 4);
        Assert.That(pci.In(PciConfigMechanism1.DataPort, 4), Is.EqualTo(0x1237_8086u), "the IDs are read-only");
        ReadConfig(pci, 0, 0, 0, 0x58);
        pci.Out(PciConfigMechanism1.DataPort + 1, 0x33);
        Assert.That(pci.In(PciConfigMechanism1.DataPort, 4), Is.EqualTo(0x0000_3300u), "PAM0 at 0x59 holds what is written");
    }

    [Test]
    public void TheAddressRegisterAnswersOnlyADwordAtCf8AsOnQemu()
    {
        PciConfigMechanism1 pci = NewPci();
        pci.Out(PciConfigMechanism1.AddressPort, 0x8000_0010, size: 4);
        pci.Out(PciConfigMechanism1.AddressPort, 0x1234, size: 2);
        pci.Out(PciConfigMechanism1.AddressPort + 2, 0x56);
        Assert.Multiple(() =>
        {
            Assert.That(pci.Address, Is.EqualTo(0x8000_0010u));
            Assert.That(pci.In(PciConfigMechanism1.AddressPort, 4), Is.EqualTo(0x8000_0010u));
            Assert.That(pci.In(PciConfigMechanism1.AddressPort, 1), Is.Zero);
            Assert.That(pci.In(PciConfigMechanism1.AddressPort, 2), Is.Zero);
        });
    }

    [Test]
    public void TheResetControlRegisterResetsTheVmWhenBitTwoIsWritten()
    {
        PciConfigMechanism1 pci = NewPci();
        pci.Out(PciConfigMechanism1.ResetControlPort, 0x02);
        Assert.That(pci.In(PciConfigMechanism1.ResetControlPort), Is.EqualTo(0x02u));
        Assert.That(_control.Resets, Is.Zero);
        pci.Out(PciConfigMechanism1.ResetControlPort, 0x06);
        Assert.That(_control.Resets, Is.EqualTo(1));
    }

    [Test]
    public void TheAddressAndTheBridgesRegistersTravelInTheSavedState()
    {
        PciConfigMechanism1 pci = NewPci();
        ReadConfig(pci, 0, 0, 0, 0x04);
        pci.Out(PciConfigMechanism1.DataPort, 0x0007, size: 2);
        var copy = new PciConfigMechanism1(_control);
        Assert.That(pci.CopyStateTo(copy), Is.True);
        Assert.That(copy.Address, Is.EqualTo(0x8000_0004u));
        Assert.That(copy.In(PciConfigMechanism1.DataPort, 4), Is.EqualTo(0x0000_0007u));
    }
}
