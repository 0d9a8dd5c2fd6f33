using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;
using static HybridVmm.Tests.Support.TerminalSession;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// <c>hybridvmm run</c> on a real pseudo-terminal (util-linux <c>script</c>): the keyboard reaches COM1 in raw mode
/// (no echo by the terminal; Ctrl-C is a byte for the guest), the escape keys work, and every way out puts the
/// terminal back as it was (<c>stty -g</c> before and after).
/// </summary>
[NonParallelizable]
public class TerminalConsoleTests
{
    private string _guest = "";

    [OneTimeSetUp]
    public void BuildGuest()
    {
        if (!File.Exists("/usr/bin/script")) Assert.Ignore("util-linux script is not installed");
        _guest = SerialEchoGuest.WriteToTempFile();
    }

    [OneTimeTearDown]
    public void RemoveGuest() => File.Delete(_guest);

    [Test]
    public void KeysReachTheGuestRawAndCtrlAXQuitsWithStatusZeroLeavingTheTerminalAsItWas()
    {
        using var session = TerminalSession.Start(_guest);
        session.WaitFor("ready");
        session.Type("abc");
        session.WaitFor("ABC");
        session.Type("\u0001h");
        session.WaitFor("C-a x");
        session.Type("z\u0001\u0001\u0003");
        session.WaitFor("Z\u0001\u0003");
        session.Type("\u0001x");
        string output = session.WaitForEnd();
        Assert.Multiple(() =>
        {
            Assert.That(output, Does.Not.Contain("abc"), "the terminal did not echo: raw mode");
            Assert.That(output, Does.Contain("hybridvmm: quit from the console (Ctrl-A x)"));
            Assert.That(output, Does.Contain("status=0"), output);
            AssertTerminalRestored(output);
        });
    }

    [Test]
    public void AGuestThatExitsLeavesTheTerminalAsItWas()
    {
        using var session = TerminalSession.Start(_guest);
        session.WaitFor("ready");
        session.Type("ok.");
        string output = session.WaitForEnd();
        Assert.That(output, Does.Contain("OK"));
        Assert.That(output, Does.Contain($"status={SerialEchoGuest.ExitValue}"), output);
        AssertTerminalRestored(output);
    }

    [Test]
    public void SigtermLeavesTheTerminalAsItWasWithTheInterruptedStatus()
    {
        using var session = TerminalSession.Start(_guest);
        string pid = session.WaitFor(@"pid=(\d+)");
        session.WaitFor("ready");
        using (Process kill = Process.Start("kill", ["-TERM", pid])) kill.WaitForExit();
        string output = session.WaitForEnd();
        Assert.That(output, Does.Contain($"status={ExitStatus.Interrupted}"), output);
        AssertTerminalRestored(output);
    }
}
