using HybridVmm.Cli.Common;
using System.Text;
using HybridVmm.Cli;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Whole-program differential runs: each compared sample guest runs under <c>qemu-system-i386 -kernel</c>
/// (live, not the committed output) and under <c>hybridvmm run</c>; serial output must be identical byte for
/// byte and the exit statuses must correspond. Skipped when qemu-system-i386 is not installed.
/// </summary>
/// <remarks>
/// QEMU's isa-debug-exit status for <c>out 0xF4, v</c> is <c>(v &lt;&lt; 1) | 1</c>; hybridvmm's is <c>v</c>.
/// The one documented difference is the fault guest: without an IDT its #DE becomes a triple fault under QEMU,
/// which with -no-reboot exits with status 0, while hybridvmm reports the #DE as a guest fault (125). The paging
/// and segments guests differ where QEMU departs from the SDM (<see cref="QemuDepartures"/>).
/// </remarks>
[NonParallelizable]
public class QemuDifferentialTests
{
    [TestCase("hello")]
    [TestCase("cpu")]
    [TestCase("asmhello")]
    [TestCase("iobench")]
    [TestCase("exits")]
    [TestCase("rings")]
    [TestCase("pic")]
    [TestCase("tasks")]
    [TestCase("apic")]
    [TestCase("realmode")]
    public void GuestPrintsTheSameBytesAndExitsWithTheSameValueAsUnderQemu(string guest)
    {
        (int qemuStatus, byte[] qemuOutput) = RunQemu(guest);
        CliProcess.Result ours = CliProcess.Run("run", Repository.GuestElf(guest));
        Assert.Multiple(() =>
        {
            Assert.That(qemuStatus & 1, Is.EqualTo(1), $"QEMU did not exit through isa-debug-exit (status {qemuStatus})");
            Assert.That(Latin1(ours.Stdout), Is.EqualTo(Latin1(qemuOutput)), ours.Stderr);
            Assert.That(ours.ExitCode, Is.EqualTo(qemuStatus >> 1), ours.Stderr);
        });
    }

    /// <summary>
    /// The chipset probe, with both machines configured alike: the RAM and processors, the RTC's date from the same base
    /// (QEMU otherwise reads the host's clock), the same command line. Two dates, so that the RTC's day, month, year and
    /// weekday are checked on a leap day and in another century (with 12-hour AM and PM hours); and sizes around QEMU's
    /// holes, so that the CMOS memory bytes (0x17/0x18, 0x30/0x31, 0x34/0x35, 0x5B-0x5D) and the processor count (0x5F)
    /// are checked where they saturate, where the RAM above 4 GiB begins (3584M: 3 GiB below the hole, 512 MiB above
    /// it) and at 4 GiB.
    /// </summary>
    [TestCase("2024-02-29T23:58:00", "probe me", "64M", 1)]
    [TestCase("1999-12-31T11:07:00", "", "64M", 1)]
    [TestCase("2024-02-29T23:58:00", "", "17M", 1)]
    [TestCase("2024-02-29T23:58:00", "", "3584M", 1)]
    [TestCase("2024-02-29T23:58:00", "", "4G", 2)]
    public void PlatformGuestReadsTheSameChipsetAsUnderQemu(string rtcBase, string append, string memory, int cpus)
    {
        (int qemuStatus, byte[] qemuOutput) = RunQemu("platform", "-m", memory, "-smp", cpus.ToString(), "-rtc", $"base={rtcBase}", "-append", append);
        CliProcess.Result ours = CliProcess.Run("run", Repository.GuestElf("platform"), "--rtc-base", rtcBase, "--append", append,
            "--memory", memory, "--cpus", cpus.ToString());
        Assert.Multiple(() =>
        {
            Assert.That(qemuStatus, Is.EqualTo(1), $"QEMU did not exit through isa-debug-exit with 0 (status {qemuStatus})");
            Assert.That(Latin1(ours.Stdout), Is.EqualTo(Latin1(qemuOutput)), ours.Stderr);
            Assert.That(ours.ExitCode, Is.EqualTo(0), ours.Stderr);
        });
        Assert.That(Latin1(ours.Stdout), Does.Contain($"multiboot cmdline [{Repository.GuestElf("platform")} {append}]\n"));
    }

    [Test]
    public void FaultGuestPrintsTheSameBytesAndQemuTripleFaultsWhereHybridVmmReportsTheDivideError()
    {
        (int qemuStatus, byte[] qemuOutput) = RunQemu("fault");
        CliProcess.Result ours = CliProcess.Run("run", Repository.GuestElf("fault"));
        Assert.Multiple(() =>
        {
            Assert.That(Latin1(ours.Stdout), Is.EqualTo(Latin1(qemuOutput)), ours.Stderr);
            Assert.That(qemuStatus, Is.EqualTo(0), "QEMU: #DE without an IDT escalates to a triple fault; -no-reboot exits 0");
            Assert.That(ours.ExitCode, Is.EqualTo(ExitStatus.GuestFault), ours.Stderr);
            Assert.That(ours.Stderr, Does.Contain("#DE"));
        });
    }

    [TestCaseSource(typeof(QemuDepartures), nameof(QemuDepartures.Guests))]
    public void GuestPrintsTheSameBytesAsUnderQemuSaveWhereQemuDepartsFromTheSdm(string guest)
    {
        (int qemuStatus, byte[] qemuOutput) = RunQemu(guest);
        CliProcess.Result ours = CliProcess.Run("run", Repository.GuestElf(guest));
        Assert.Multiple(() =>
        {
            foreach (string line in QemuDepartures.QemuLines(guest))
            {
                Assert.That(Latin1(qemuOutput), Does.Contain(line + "\n"));
            }
            Assert.That(Latin1(ours.Stdout), Is.EqualTo(QemuDepartures.AsTheSdmSays(guest, Latin1(qemuOutput))), ours.Stderr);
            Assert.That(ours.ExitCode, Is.EqualTo(qemuStatus >> 1), ours.Stderr);
        });
    }

    private static string Latin1(byte[] bytes) => Encoding.Latin1.GetString(bytes);

    private static (int Status, byte[] Output) RunQemu(string guest, params string[] machine)
    {
        CliProcess.Result run = CliProcess.RunProgram(QemuReference.Require(),
        [
            "-kernel", Repository.GuestElf(guest), "-serial", "stdio", "-monitor", "none", "-display", "none",
            "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", .. machine,
        ], Repository.Root);
        TestContext.Out.WriteLine($"{QemuReference.Program} {guest}: status {run.ExitCode}, {run.Stdout.Length} bytes {run.Stderr}");
        return (run.ExitCode, run.Stdout);
    }
}
