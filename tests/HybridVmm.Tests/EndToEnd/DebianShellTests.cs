using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Debian's kernel to an interactive BusyBox shell on COM1 (samples/linux/shell-init.sh), typed into through
/// <c>--serial-input</c>: the commands travel through the UART's receive FIFO, its interrupts and Linux's tty to
/// the shell, whose answers must equal those of the same kernel, initramfs and keys under
/// <c>qemu-system-i386 -serial stdio</c>.
/// </summary>
[NonParallelizable]
public class DebianShellTests
{
    private const string CommandLine = "console=ttyS0 cryptomgr.notests panic=-1 quiet";

    /// <summary>A safety net only: the boot, the commands and the reboot take about 3.5 G instructions.</summary>
    private const long InstructionBudget = 10_000_000_000;

    /// <summary>
    /// Each command prints its answer between [[ and ]], expanded from a $(...) that its echo on the terminal still
    /// shows: keys typed ahead are echoed by Linux's tty whenever they arrive, possibly in the middle of an earlier
    /// command's output, so the answers are found by their brackets, not by their lines.
    /// </summary>
    private static readonly string[] Commands =
    [
        "echo \"[[answer $((6*7))]]\"",
        "echo \"[[$(tty)]]\"",
        "echo \"[[$(ls / | tr '\\n' ' ')]]\"",
        "echo \"[[$(echo abc def | tr a-z A-Z)]]\"",
        "echo \"[[$(cat /proc/cmdline)]]\"",
        "sleep 1; echo \"[[$(echo slept)]]\"",
        "exit",
    ];

    private static readonly string[] Expected =
        ["answer 42", "/dev/ttyS0", "bin dev init proc root sys tmp ", "ABC DEF", CommandLine, "slept"];

    private static string Debian(string file) => Path.Combine(Repository.Root, "samples", "linux", "debian", file);

    private static string[] Answers(string output) =>
        Regex.Matches(output, @"\[\[([^$\]\r\n]*)\]\]").Select(m => m.Groups[1].Value).ToArray();

    [Test]
    public void CommandsTypedIntoTheShellGetTheAnswersTheyGetUnderQemu()
    {
        string kernel = Debian("vmlinuz"), busybox = Debian("busybox");
        foreach (string path in new[] { kernel, busybox })
        {
            if (File.Exists(path)) continue;
            string why = $"{path} is missing: run samples/linux/fetch-debian.sh";
            if (Environment.GetEnvironmentVariable("CI") is not null) Assert.Fail(why + " (.ci/run should have)");
            Assert.Ignore(why);
        }

        string dir = Directory.CreateTempSubdirectory("hybridvmm-shell-").FullName;
        try
        {
            string initrd = Path.Combine(dir, "shell.cpio.gz"), keys = Path.Combine(dir, "keys.txt");
            CliProcess.Result pack = CliProcess.RunProgram("bash",
                [Path.Combine(Repository.Root, "samples", "linux", "make-initramfs.sh"), "shell-init.sh", initrd], Repository.Root);
            Assert.That(pack.ExitCode, Is.Zero, pack.Stderr);
            byte[] input = Encoding.ASCII.GetBytes(string.Join("\n", Commands) + "\n");
            File.WriteAllBytes(keys, input);

            string qemu = QemuReference.RunLinuxTyping(kernel, CommandLine, "128M", initrd, "\n# ", input);
            Assert.That(Answers(qemu), Is.EqualTo(Expected), "QEMU's session:\n" + qemu);

            var clock = Stopwatch.StartNew();
            CliProcess.Result ours = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", kernel, "--initrd", initrd, "--memory", "128M",
                "--append", CommandLine, "--serial-input", keys, "--max-instructions", InstructionBudget.ToString());
            TestContext.Out.WriteLine($"hybridvmm: {clock.Elapsed.TotalSeconds:0} s, status {ours.ExitCode}");
            Assert.Multiple(() =>
            {
                Assert.That(Answers(ours.Text), Is.EqualTo(Answers(qemu)), "our session:\n" + ours.Text);
                Assert.That(ours.Text, Does.Contain("shell: BusyBox v"));
                Assert.That(ours.Text, Does.Contain("shell: the shell exited"));
                // The shell's exit ends init, whose reboot -f resets the machine through the keyboard controller (status 0).
                Assert.That(ours.ExitCode, Is.Zero, ours.Stderr);
            });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
