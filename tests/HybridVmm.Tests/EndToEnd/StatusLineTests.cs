using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// The live status line (README "Command line reference"): on a terminal's stderr while a long run goes to a file, it
/// shows instructions, MIPS and virtual time; without a terminal there is none, and stdout is byte for byte the same.
/// </summary>
public class StatusLineTests
{
    [Test]
    public void ARunWithItsOutputInAFileShowsProgressOnTheTerminalAndTheFileIsUnchanged()
    {
        string output = Path.Combine(Path.GetTempPath(), $"hybridvmm-status-{Guid.NewGuid():N}.txt");
        try
        {
            using TerminalSession terminal = TerminalSession.StartHybridVmm($"run \"{Repository.GuestElf("cpu")}\" > \"{output}\"");
            terminal.WaitFor(@"hybridvmm: cpu: [\d,]+ instructions, \d+\.\d MIPS, virtual time \d+\.\d{3} s");
            string screen = terminal.WaitForEnd();
            Assert.Multiple(() =>
            {
                Assert.That(screen, Does.Contain("status=0"), screen);
                Assert.That(File.ReadAllBytes(output), Is.EqualTo(File.ReadAllBytes(Path.Combine(Repository.GuestsDirectory, "bin", "cpu.qemu.txt"))),
                    "stdout is the guest's output byte for byte, as QEMU's");
                // The line is removed at the end: after its last drawing comes the erase, and nothing of it is left for the shell.
                Assert.That(screen[screen.LastIndexOf("MIPS", StringComparison.Ordinal)..], Does.Contain("\r\u001b[K"));
            });
        }
        finally
        {
            File.Delete(output);
        }
    }

    [Test]
    public void WithoutATerminalThereIsNoStatusLine()
    {
        CliProcess.Result run = CliProcess.Run("run", Repository.GuestElf("cpu"));
        Assert.Multiple(() =>
        {
            Assert.That(run.ExitCode, Is.Zero, run.Stderr);
            Assert.That(run.Stderr, Does.Not.Contain("MIPS"));
            Assert.That(run.Stderr, Does.Not.Contain("\u001b["));
            Assert.That(run.Stdout, Is.EqualTo(File.ReadAllBytes(Path.Combine(Repository.GuestsDirectory, "bin", "cpu.qemu.txt"))));
        });
    }
}
