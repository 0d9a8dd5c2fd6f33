using System.Diagnostics;
using HybridVmm.Tests.Lecture;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// The live status line (README "Command line reference"): on a terminal's stderr while a long run goes to a file, it
/// shows instructions, MIPS and virtual time, and during a live migration the rounds and the pages moved; without a
/// terminal there is none, and stdout is byte for byte the same.
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

    [Test]
    public void ALiveMigrationShowsItsRoundsAndPagesOnTheSourcesTerminalAndTheGuestsOutputIsWhole()
    {
        string output = Path.Combine(Path.GetTempPath(), $"hybridvmm-status-{Guid.NewGuid():N}.txt");
        using Process receiver = LiveMigrationTests.StartReceiver(out int port, "--insecure");
        Task<string> received = receiver.StandardOutput.ReadToEndAsync();
        Task<string> receiverErr = receiver.StandardError.ReadToEndAsync();
        try
        {
            using TerminalSession terminal = TerminalSession.StartHybridVmm(
                $"run \"{Repository.GuestElf("cpu")}\" --migrate-at 9000000 --migrate-to 127.0.0.1:{port} > \"{output}\"");
            terminal.WaitFor(@"hybridvmm: cpu: migrating to 127\.0\.0\.1:\d+: pre-copy round 1, [\d,]+ pages \(\d+\.\d MiB\) sent");
            terminal.WaitFor(@"hybridvmm: cpu: migrating to 127\.0\.0\.1:\d+: final copy, [\d,]+ pages \(\d+\.\d MiB\) sent");
            string screen = terminal.WaitForEnd();
            Assert.That(receiver.WaitForExit(TimeSpan.FromMinutes(2)), Is.True, "the receiver ran the guest to its end");
            Assert.Multiple(() =>
            {
                Assert.That(screen, Does.Contain("status=0"), screen);
                Assert.That(screen, Does.Contain("hybridvmm: migrated after "), "the summary follows the line");
                Assert.That(screen[screen.LastIndexOf("MiB) sent", StringComparison.Ordinal)..], Does.Contain("\r\u001b[K"), "the line is removed before the summary");
                Assert.That(File.ReadAllText(output) + received.Result, Is.EqualTo(File.ReadAllText(Path.Combine(Repository.GuestsDirectory, "bin", "cpu.qemu.txt"))),
                    "what the guest printed before the move, then after it on the target, is QEMU's output");
                Assert.That(receiverErr.Result, Does.Not.Contain("\u001b["), "the receiver's stderr is no terminal: no line there");
            });
        }
        finally
        {
            File.Delete(output);
            if (!receiver.HasExited) receiver.Kill();
        }
    }

    [Test]
    public void AReceiverOnATerminalShowsThePagesItHasReceived()
    {
        string output = Path.Combine(Path.GetTempPath(), $"hybridvmm-status-{Guid.NewGuid():N}.txt");
        try
        {
            using TerminalSession terminal = TerminalSession.StartHybridVmm($"receive --listen 127.0.0.1:0 --insecure > \"{output}\"");
            string port = terminal.WaitFor(@"hybridvmm: listening on 127\.0\.0\.1:(\d+)");
            CliProcess.Result source = CliProcess.Run("run", Repository.GuestElf("cpu"), "--migrate-at", "9000000", "--migrate-to", $"127.0.0.1:{port}");
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            terminal.WaitFor(@"hybridvmm: receiving from 127\.0\.0\.1:\d+: 1 pre-copy round, [\d,]+ pages \(\d+\.\d MiB\) received");
            terminal.WaitFor(@"hybridvmm: receiving from 127\.0\.0\.1:\d+: final copy, [\d,]+ pages \(\d+\.\d MiB\) received");
            string screen = terminal.WaitForEnd();
            Assert.Multiple(() =>
            {
                Assert.That(screen, Does.Contain("status=0"), screen);
                Assert.That(source.Stderr, Does.Not.Contain("\u001b["), "the source's stderr is no terminal: no line there");
                Assert.That(source.Text + File.ReadAllText(output), Is.EqualTo(File.ReadAllText(Path.Combine(Repository.GuestsDirectory, "bin", "cpu.qemu.txt"))));
            });
        }
        finally
        {
            File.Delete(output);
        }
    }
}
