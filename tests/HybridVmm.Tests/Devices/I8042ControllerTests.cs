using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

public class I8042ControllerTests
{
    // NUnit runs every test of a fixture on one instance: each test gets its own.
    private CountingControl _control = new();

    [SetUp]
    public void NewFixtureState() => _control = new();

    private I8042Controller NewController() => new(_control);

    private static uint Status(I8042Controller kbc) => kbc.In(I8042Controller.CommandPort);

    private static uint Command(I8042Controller kbc, byte command)
    {
        kbc.Out(I8042Controller.CommandPort, command);
        Assert.That(Status(kbc) & I8042Controller.StatusOutputFull, Is.Not.Zero, $"command 0x{command:x2} answers");
        return kbc.In(I8042Controller.DataPort);
    }

    [Test]
    public void ItStartsAsQemusFirmwareLeavesIt()
    {
        I8042Controller kbc = NewController();
        Assert.That(Status(kbc), Is.EqualTo(0x1Cu));
        Assert.That(Command(kbc, 0x20), Is.EqualTo(0x61u));
        Assert.That(Command(kbc, 0xD0), Is.EqualTo(0xCFu), "output port: reset line high, A20 on");
    }

    [Test]
    public void SelfTestAnswersFiftyFiveAndTheInterfaceTestsZero()
    {
        I8042Controller kbc = NewController();
        Assert.Multiple(() =>
        {
            Assert.That(Command(kbc, 0xAA), Is.EqualTo(0x55u));
            Assert.That(Command(kbc, 0xAB), Is.EqualTo(0x00u));
            Assert.That(Command(kbc, 0xA9), Is.EqualTo(0x00u));
            Assert.That(Status(kbc) & I8042Controller.StatusOutputFull, Is.Zero, "each answer was read");
            Assert.That(Status(kbc) & I8042Controller.StatusSystemFlag, Is.Not.Zero);
        });
    }

    [Test]
    public void TheCommandByteIsWrittenThroughTheDataPortAndReadsBack()
    {
        I8042Controller kbc = NewController();
        kbc.Out(I8042Controller.CommandPort, 0x60);
        kbc.Out(I8042Controller.DataPort, 0x45);
        Assert.That(kbc.CommandByte, Is.EqualTo(0x45));
        Assert.That(Command(kbc, 0x20), Is.EqualTo(0x45u));
        kbc.Out(I8042Controller.CommandPort, 0xAD); // disable the keyboard: command byte bit 4
        Assert.That(Command(kbc, 0x20), Is.EqualTo(0x55u));
    }

    [Test]
    public void CommandFeResetsTheVmAndOddPulsesDoNot()
    {
        I8042Controller kbc = NewController();
        kbc.Out(I8042Controller.CommandPort, 0xFF); // pulse nothing
        Assert.That(_control.Resets, Is.Zero);
        kbc.Out(I8042Controller.CommandPort, 0xFE);
        Assert.That(_control.Resets, Is.EqualTo(1));
        Assert.That(_control.Others, Is.Zero);
    }

    [Test]
    public void WritingTheOutputPortWithTheResetLineLowResetsTheVm()
    {
        I8042Controller kbc = NewController();
        kbc.Out(I8042Controller.CommandPort, 0xD1);
        kbc.Out(I8042Controller.DataPort, 0xCD);
        Assert.That(_control.Resets, Is.Zero, "bit 0 high: no reset; A20 off");
        Assert.That(Command(kbc, 0xD0), Is.EqualTo(0xCDu));
        kbc.Out(I8042Controller.CommandPort, 0xD1);
        kbc.Out(I8042Controller.DataPort, 0xCE);
        Assert.That(_control.Resets, Is.EqualTo(1));
    }

    [Test]
    public void TheKeyboardAcknowledgesAndAnswersResetAndIdentify()
    {
        I8042Controller kbc = NewController();
        kbc.Out(I8042Controller.DataPort, 0xFF);
        kbc.Out(I8042Controller.DataPort, 0xF2);
        var answers = new List<uint>();
        while ((Status(kbc) & I8042Controller.StatusOutputFull) != 0)
        {
            answers.Add(kbc.In(I8042Controller.DataPort));
        }

        Assert.That(answers, Is.EqualTo(new uint[] { 0xFA, 0xAA, 0xFA, 0xAB, 0x83 }));
        Assert.That(kbc.In(I8042Controller.DataPort), Is.EqualTo(0x83u), "an empty buffer reads its last byte again");
    }

    [Test]
    public void AWiderReadGivesTheRegisterAndAllOnesForThePortsBeyondIt()
    {
        I8042Controller kbc = NewController();
        Assert.That(kbc.In(I8042Controller.CommandPort, 2), Is.EqualTo(0xFF1Cu));
        Assert.That(kbc.In(I8042Controller.CommandPort, 4), Is.EqualTo(0xFFFF_FF1Cu));
    }

    [Test]
    public void APendingAnswerAndCommandTravelInTheSavedState()
    {
        I8042Controller kbc = NewController();
        kbc.Out(I8042Controller.CommandPort, 0xAA);
        kbc.Out(I8042Controller.CommandPort, 0x60); // waits for its data byte
        var copy = new I8042Controller(_control);
        Assert.That(kbc.CopyStateTo(copy), Is.True);
        Assert.That(copy.In(I8042Controller.DataPort), Is.EqualTo(0x55u));
        copy.Out(I8042Controller.DataPort, 0x01);
        Assert.That(copy.CommandByte, Is.EqualTo(0x01));
    }
}
