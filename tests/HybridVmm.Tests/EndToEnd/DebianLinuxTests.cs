using System.Text;
using System.Text.RegularExpressions;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Debian's own i386 kernel (linux-image-686, fetched by samples/linux/fetch-debian.sh, which .ci/run calls), booted
/// through the Linux 32-bit boot protocol and compared with the same kernel and command line under
/// <c>qemu-system-i386 -kernel</c>: the lines both machines must print alike, timestamps aside.
/// </summary>
[NonParallelizable]
public class DebianLinuxTests
{
    private const string CommandLine = "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1";

    /// <summary>Enough for Debian 6.1 to decompress itself and print its memory setup (about 2.2 G instructions).</summary>
    private const long InstructionBudget = 2_600_000_000;

    private static string Kernel => Path.Combine(Repository.Root, "samples", "linux", "debian", "vmlinuz");

    private static void RequireKernel()
    {
        if (File.Exists(Kernel)) return;
        string why = $"Debian's i386 kernel is not at {Kernel}: run samples/linux/fetch-debian.sh";
        if (Environment.GetEnvironmentVariable("CI") is not null) Assert.Fail(why + " (.ci/run should have)");
        Assert.Ignore(why);
    }

    /// <summary>"[    0.000000] text" → "text": the time stamps are the only part two machines may differ in.</summary>
    private static string[] KernelLog(string output) =>
        output.Split('\n').Select(l => Regex.Replace(l.TrimEnd('\r'), @"^\[\s*\d+\.\d+\] ", "")).ToArray();

    [Test]
    public void TheBannerTheMemoryMapAndTheCommandLineAreWhatQemuShows()
    {
        RequireKernel();
        CliProcess.Result ours = CliProcess.RunLong(TimeSpan.FromMinutes(15), "run", Kernel, "--memory", "128M", "--append", CommandLine,
            "--max-instructions", InstructionBudget.ToString());
        // The budget ends the run; a kernel that got further and panicked (panic=-1 resets, which stops the VM) would end it with 0.
        Assert.That(ours.ExitCode, Is.EqualTo(ExitStatus.InstructionLimit).Or.EqualTo(0), ours.Stderr);
        string[] log = KernelLog(Encoding.Latin1.GetString(ours.Stdout));

        string[] qemu = KernelLog(QemuReference.RunLinux(Kernel, CommandLine, "128M"));
        string[] expected =
        [
            .. qemu.Where(l => l.StartsWith("Linux version ")),
            // The first three ranges; QEMU's firmware then keeps RAM's top 128 KiB for ACPI, which HybridVmm has none of.
            .. qemu.Where(l => l.StartsWith("BIOS-e820: ")).Take(3),
            "printk: bootconsole [earlyser0] enabled",
            .. qemu.Where(l => l.StartsWith("Kernel command line: ")),
        ];
        Assert.That(expected, Has.Length.EqualTo(6), "QEMU's log: " + string.Join('\n', qemu.Take(20)));
        Assert.That(log, Is.SupersetOf(expected), string.Join('\n', log.Take(60)));
        Assert.That(log, Does.Contain("BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable"), "RAM above 1 MiB to the end");
    }
}
