using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>Port 0x80 (POST codes) and port 0x92 (System Control Port A).</summary>
public class MiscPortTests
{
    [Test]
    public void PortEightyReadsAllOnesAtEveryWidthAndKeepsTheLastCode()
    {
        var post = new PostCodePort();
        post.Out(PostCodePort.Port, 0x3C);
        Assert.Multiple(() =>
        {
            Assert.That(post.In(PostCodePort.Port, 1), Is.EqualTo(0xFFu));
            Assert.That(post.In(PostCodePort.Port, 2), Is.EqualTo(0xFFFFu));
            Assert.That(post.In(PostCodePort.Port, 4), Is.EqualTo(0xFFFF_FFFFu));
            Assert.That(post.LastCode, Is.EqualTo(0x3Cu));
        });
    }

    [Test]
    public void PortNinetyTwoStartsWithA20OnAndReadsBackWhatIsWritten()
    {
        var control = new CountingControl();
        var port = new SystemControlPortA(control);
        Assert.That(port.In(SystemControlPortA.Port), Is.EqualTo(0x02u));
        port.Out(SystemControlPortA.Port, 0xC0);
        Assert.Multiple(() =>
        {
            Assert.That(port.In(SystemControlPortA.Port), Is.EqualTo(0xC0u));
            Assert.That(port.A20Enabled, Is.False);
            Assert.That(port.In(SystemControlPortA.Port, 2), Is.EqualTo(0xFFC0u), "0x93 is not this port");
            Assert.That(control.Resets, Is.Zero);
        });
    }

    [Test]
    public void BitZeroRisingResetsTheVmOnceAndStayingSetDoesNot()
    {
        var control = new CountingControl();
        var port = new SystemControlPortA(control);
        port.Out(SystemControlPortA.Port, 0x03);
        port.Out(SystemControlPortA.Port, 0x03);
        Assert.That(control.Resets, Is.EqualTo(1));
        port.Out(SystemControlPortA.Port, 0x02);
        port.Out(SystemControlPortA.Port, 0x03);
        Assert.That(control.Resets, Is.EqualTo(2));
        Assert.That(control.Others, Is.Zero);
    }

    [Test]
    public void PortNinetyTwoKeepsItsValueInTheSavedState()
    {
        var port = new SystemControlPortA(new CountingControl());
        port.Out(SystemControlPortA.Port, 0x42);
        var copy = new SystemControlPortA(new CountingControl());
        Assert.That(port.CopyStateTo(copy), Is.True);
        Assert.That(copy.In(SystemControlPortA.Port), Is.EqualTo(0x42u));
    }
}
