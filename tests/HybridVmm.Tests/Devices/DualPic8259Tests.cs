using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>
/// The 8259A pair through the device contract (ports) and the processor side (INTR, acknowledge), checked against the
/// Intel 8259A data sheet's programming model; the power-on values are those the pic sample guest read under QEMU
/// (samples/guests/bin/pic.qemu.txt).
/// </summary>
public class DualPic8259Tests
{
    private static DualPic8259 Remapped(byte icw4 = 0x01)
    {
        var pic = new DualPic8259();
        pic.Out(0x20, 0x11); pic.Out(0xA0, 0x11);
        pic.Out(0x21, 0x20); pic.Out(0xA1, 0x28);
        pic.Out(0x21, 0x04); pic.Out(0xA1, 0x02);
        pic.Out(0x21, icw4); pic.Out(0xA1, icw4);
        pic.Out(0x21, 0x00); pic.Out(0xA1, 0x00);
        return pic;
    }

    private static uint Isr(DualPic8259 pic, ushort cmd = 0x20) { pic.Out(cmd, 0x0B); return pic.In(cmd); }

    private static uint Irr(DualPic8259 pic, ushort cmd = 0x20) { pic.Out(cmd, 0x0A); return pic.In(cmd); }

    [Test]
    public void PowerOnStateIsWhatQemusFirmwareLeavesAndVectorsAre08And70()
    {
        var pic = new DualPic8259();
        string qemu = File.ReadAllText(Path.ChangeExtension(Support.Repository.GuestElf("pic"), ".qemu.txt"));
        Assert.That(qemu, Does.Contain("power-on: imr b8 8e, elcr 00 0c\n"));
        Assert.Multiple(() =>
        {
            Assert.That((pic.In(0x21), pic.In(0xA1), pic.In(0x4D0), pic.In(0x4D1)), Is.EqualTo((0xB8u, 0x8Eu, 0x00u, 0x0Cu)));
            pic.SetIrq(0, true);
            Assert.That(pic.Acknowledge(), Is.EqualTo(new DualPic8259.Acknowledgement(0x08, 0, false)));
            pic.Out(0x20, 0x20);
            pic.SetIrq(8, true);
            Assert.That(pic.Acknowledge(), Is.EqualTo(new DualPic8259.Acknowledgement(0x70, 8, false)));
            Assert.That((Isr(pic), Isr(pic, 0xA0)), Is.EqualTo((0x04u, 0x01u)), "the cascade input is in service on the master");
        });
    }

    [Test]
    public void ALowerPriorityRequestWaitsForTheEoiOfAHigherOne()
    {
        DualPic8259 pic = Remapped();
        pic.SetIrq(5, true);
        pic.SetIrq(3, true);
        Assert.That(pic.Acknowledge().Vector, Is.EqualTo(0x23));
        Assert.Multiple(() =>
        {
            Assert.That(pic.Intr, Is.False, "IR5 is below IR3, which is in service");
            Assert.That((Irr(pic), Isr(pic)), Is.EqualTo((0x20u, 0x08u)));
        });
        pic.Out(0x20, 0x20); // non-specific EOI
        Assert.Multiple(() =>
        {
            Assert.That(pic.Intr, Is.True);
            Assert.That(pic.Acknowledge().Vector, Is.EqualTo(0x25));
        });
    }

    [Test]
    public void AHigherPriorityRequestNestsOverOneInService()
    {
        DualPic8259 pic = Remapped();
        pic.SetIrq(5, true);
        Assert.That(pic.Acknowledge().Irq, Is.EqualTo(5));
        pic.SetIrq(1, true);
        Assert.That(pic.Intr, Is.True);
        Assert.That(pic.Acknowledge().Irq, Is.EqualTo(1));
        pic.Out(0x20, 0x65); // specific EOI for IR5 leaves IR1 in service
        Assert.That(Isr(pic), Is.EqualTo(0x02u));
    }

    [Test]
    public void SetPriorityAndRotateOnEoiMoveTheLowestPriority()
    {
        DualPic8259 pic = Remapped();
        pic.Out(0x20, 0xC4); // set priority: IR4 lowest, so IR5 highest
        pic.SetIrq(3, true);
        pic.SetIrq(5, true);
        Assert.That(pic.Acknowledge().Irq, Is.EqualTo(5));
        pic.Out(0x20, 0xA0); // rotate on non-specific EOI: IR5 becomes lowest, IR6 highest
        pic.SetIrq(6, true);
        Assert.That(pic.Acknowledge().Irq, Is.EqualTo(6), "IR6 now outranks IR3");
    }

    [Test]
    public void AutoEoiLeavesNothingInService()
    {
        DualPic8259 pic = Remapped(icw4: 0x03);
        pic.SetIrq(0, true);
        Assert.That(pic.Acknowledge().Vector, Is.EqualTo(0x20));
        Assert.That(Isr(pic), Is.Zero);
    }

    [Test]
    public void AnEdgeInputNeedsANewRisingEdgeAfterInitialization()
    {
        var pic = new DualPic8259();
        pic.SetIrq(0, true);
        Assert.That(pic.Intr, Is.True);
        DualPic8259 remapped = pic;
        remapped.Out(0x20, 0x11); remapped.Out(0x21, 0x20); remapped.Out(0x21, 0x04); remapped.Out(0x21, 0x01); remapped.Out(0x21, 0x00);
        Assert.That((Irr(pic), pic.Intr), Is.EqualTo((0u, false)), "ICW1 forgets the latched edge");
        pic.SetIrq(0, false);
        pic.SetIrq(0, true);
        Assert.That(pic.Acknowledge().Vector, Is.EqualTo(0x20));
    }

    [Test]
    public void PollModeAcknowledgesByReading()
    {
        DualPic8259 pic = Remapped();
        pic.SetIrq(4, true);
        pic.Out(0x20, 0x0C);
        Assert.That(pic.In(0x20), Is.EqualTo(0x84u));
        Assert.That(Isr(pic), Is.EqualTo(0x10u));
        pic.Out(0x20, 0x0C);
        Assert.That(pic.In(0x20), Is.Zero, "no request: QEMU's poll word is 0");
    }

    [Test]
    public void SpecialMaskModeLetsLowerPrioritiesInWhileTheMaskedOneIsInService()
    {
        DualPic8259 pic = Remapped();
        pic.SetIrq(1, true);
        Assert.That(pic.Acknowledge().Irq, Is.EqualTo(1));
        pic.SetIrq(6, true);
        Assert.That(pic.Intr, Is.False);
        pic.Out(0x21, 0x02);  // mask IR1
        pic.Out(0x20, 0x68);  // OCW3: set special mask mode
        Assert.That(pic.Intr, Is.True);
        Assert.That(pic.Acknowledge().Irq, Is.EqualTo(6));
    }

    [Test]
    public void ARequestThatVanishesBeforeTheAcknowledgeIsSpuriousIrq7Or15()
    {
        DualPic8259 pic = Remapped();
        pic.Out(0x4D1, 0x04);           // IRQ 10 level-triggered
        pic.SetIrq(10, true);
        Assert.That(pic.Intr, Is.True);
        pic.SetIrq(10, false);          // the slave's request goes; the master's IR2 edge stays latched
        Assert.That(pic.Acknowledge(), Is.EqualTo(new DualPic8259.Acknowledgement(0x2F, 15, true)));
        Assert.That((Isr(pic), Isr(pic, 0xA0)), Is.EqualTo((0x04u, 0x00u)), "the master's IR2 is in service, the slave sets nothing");
        pic.Out(0x20, 0x20);
        Assert.That(pic.Acknowledge(), Is.EqualTo(new DualPic8259.Acknowledgement(0x27, 7, true)), "nothing pending at all: IR7");
        Assert.That(Isr(pic), Is.Zero);
    }

    [Test]
    public void ElcrKeepsOnlyTheBitsAPcLetsSoftwareWrite()
    {
        var pic = new DualPic8259();
        pic.Out(0x4D0, 0xFF);
        pic.Out(0x4D1, 0xFF);
        Assert.That((pic.In(0x4D0), pic.In(0x4D1)), Is.EqualTo((0xF8u, 0xDEu)));
    }

    [Test]
    public void NonsenseFromTheGuestNeverThrowsAndAFreshInitializationStillWorks()
    {
        var pic = new DualPic8259();
        var random = new Random(9);
        ushort[] ports = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1];
        for (int i = 0; i < 20_000; i++)
        {
            ushort port = ports[random.Next(ports.Length)];
            int size = 1 << random.Next(3);
            if (random.Next(2) == 0) pic.Write(port, size, (uint)random.Next());
            else pic.Read(port, size);
            if (random.Next(4) == 0) pic.SetIrq(random.Next(-2, 18), random.Next(2) == 0);
            if (pic.Intr && random.Next(2) == 0) pic.Acknowledge();
        }

        for (int irq = 0; irq < 16; irq++) pic.SetIrq(irq, false);
        pic.Out(0x4D0, 0); pic.Out(0x4D1, 0);
        pic.Out(0x20, 0x11); pic.Out(0x21, 0x20); pic.Out(0x21, 0x04); pic.Out(0x21, 0x01); pic.Out(0x21, 0xFE);
        pic.Out(0x20, 0x0A);
        pic.SetIrq(0, true);
        Assert.That(pic.Acknowledge(), Is.EqualTo(new DualPic8259.Acknowledgement(0x20, 0, false)));
    }

    [Test]
    public void SavedStateRestoresMidInitializationAndRequestsInService()
    {
        DualPic8259 pic = Remapped();
        pic.SetIrq(3, true);
        pic.Acknowledge();
        pic.SetIrq(9, true);
        pic.Out(0xA0, 0x11);            // the slave waits for ICW2
        var copy = new DualPic8259();
        bool intr = false;
        copy.ConnectIntr(level => intr = level);
        Assert.That(pic.CopyStateTo(copy), Is.True);
        copy.Out(0xA1, 0x50);           // ICW2 on the copy
        pic.Out(0xA1, 0x50);
        Assert.Multiple(() =>
        {
            Assert.That(copy.Save(), Is.EqualTo(pic.Save()));
            Assert.That((Isr(copy), copy.In(0x21)), Is.EqualTo((0x08u, 0x00u)));
            Assert.That(intr, Is.EqualTo(pic.Intr));
        });
    }
}
