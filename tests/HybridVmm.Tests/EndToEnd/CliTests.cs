using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>The real CLI on the real sample guests, compared with what QEMU printed for the same ELF.</summary>
public class CliTests
{
    [TestCase("hello")]
    [TestCase("cpu")]
    [TestCase("asmhello")]
    [TestCase("iobench")]
    [TestCase("rings")]
    [TestCase("pic")]
    [TestCase("tasks")]
    [TestCase("apic")]
    [TestCase("realmode")]
    public void RunPrintsTheSameBytesAsQemuAndExitsWithTheGuestValue(string guest)
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf(guest));
        byte[] qemu = File.ReadAllBytes(Path.ChangeExtension(Repository.GuestElf(guest), ".qemu.txt"));
        Assert.Multiple(() =>
        {
            Assert.That(result.Text, Is.EqualTo(System.Text.Encoding.Latin1.GetString(qemu)), result.Stderr);
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Stderr);
        });
    }

    [TestCaseSource(typeof(QemuDepartures), nameof(QemuDepartures.Guests))]
    public void GuestsPrintWhatQemuPrintsSaveWhereQemuDepartsFromTheSdm(string guest)
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf(guest));
        string qemu = Repository.QemuOutput(guest);
        Assert.Multiple(() =>
        {
            foreach (string line in QemuDepartures.QemuLines(guest))
            {
                Assert.That(qemu, Does.Contain(line + "\n"), "the committed QEMU output shows the departure");
            }
            Assert.That(result.Text, Is.EqualTo(QemuDepartures.AsTheSdmSays(guest, qemu)), result.Stderr);
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Stderr);
        });
    }

    /// <summary>
    /// The platform guest probes the chipset devices; run from samples/guests with the machine QEMU had when
    /// bin/platform.qemu.txt was recorded (make qemu-check: -m 64M -rtc base=2024-02-29T23:58:00 -append 'probe me'),
    /// it prints the same bytes, its command line ("bin/platform.elf probe me") included.
    /// </summary>
    [Test]
    public void ThePlatformGuestReadsTheSameChipsetAsInTheCommittedQemuOutput()
    {
        CliProcess.Result result = CliProcess.RunIn(Repository.GuestsDirectory,
            "run", "bin/platform.elf", "--rtc-base", "2024-02-29T23:58:00", "--append", "probe me", "--memory", "64M");
        byte[] qemu = File.ReadAllBytes(Path.ChangeExtension(Repository.GuestElf("platform"), ".qemu.txt"));
        Assert.Multiple(() =>
        {
            Assert.That(result.Text, Is.EqualTo(System.Text.Encoding.Latin1.GetString(qemu)), result.Stderr);
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Stderr);
        });
    }

    [Test]
    public void AFaultingGuestGetsTheFaultStatusAndADiagnosticOnStderr()
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("fault"));
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.GuestFault));
            Assert.That(result.Text, Is.EqualTo(Repository.QemuOutput("fault")));
            Assert.That(result.Stderr, Does.Contain("#DE").And.Contain("EIP").And.Contain("div"));
            Assert.That(result.Stderr, Does.Not.Contain("   at "), "no stack trace");
        });
    }

    [Test]
    public void AWildGuestIsStoppedWhenItWritesOutsideItsMemory()
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("wild"));
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.GuestFault));
        Assert.That(result.Stderr, Does.Contain("outside the guest's"));
    }

    [Test]
    public void TheMaxInstructionsLimitHasItsOwnStatus()
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("cpu"), "--max-instructions", "100000");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.InstructionLimit));
        Assert.That(result.Stderr, Does.Contain("instruction limit"));
    }

    /// <summary>
    /// A guest that prints one byte and pulses the keyboard controller's reset line: without <c>--reboot</c> the reset
    /// ends the run (status 0, as QEMU's <c>-no-reboot</c>); with it each reset boots the guest again, and the
    /// instruction limit counts every boot together.
    /// </summary>
    [Test]
    public void WithRebootAResetBootsTheGuestAgainAndTheInstructionLimitCountsEveryBoot()
    {
        string image = Path.Combine(Path.GetTempPath(), $"hybridvmm-resets-{Guid.NewGuid():N}.elf");
        File.WriteAllBytes(image, FlatKernel.PrintThenReset());
        try
        {
            CliProcess.Result once = CliProcess.Run("run", image);
            CliProcess.Result rebooting = CliProcess.Run("run", image, "--reboot", "--max-instructions", "100");
            Assert.Multiple(() =>
            {
                Assert.That((once.ExitCode, once.Text), Is.EqualTo((0, "b")), once.Stderr);
                Assert.That(once.Stderr, Does.Contain("asked for a reset"));
                AssertOneByteABoot(rebooting, 100, 'b', "reset the machine; booting it again", "five instructions a boot");
            });

            CliProcess.Result refused = CliProcess.Run("run", image, "--reboot", "--save-at", "3", "--save-to", image + ".snap");
            Assert.That(refused.ExitCode, Is.EqualTo(ExitStatus.Usage));
            Assert.That(refused.Stderr, Does.Contain("--reboot does not go with --save-at"));
        }
        finally
        {
            File.Delete(image);
        }
    }

    /// <summary>
    /// A triple fault resets a PC (the chipset answers the processor's shutdown with a reset), and QEMU resets the VM:
    /// with <c>-no-reboot</c> its run ends after one boot, without it the guest boots again and again. <c>run</c> ends as
    /// <c>-no-reboot</c> does, but with the fault status and the diagnostic (the reset was not asked for), and
    /// <c>run --reboot</c> boots the guest again each time, as QEMU does by default.
    /// </summary>
    [Test]
    public void ATripleFaultResetsTheGuestAsUnderQemu()
    {
        string image = Path.Combine(Path.GetTempPath(), $"hybridvmm-triple-{Guid.NewGuid():N}.elf");
        File.WriteAllBytes(image, FlatKernel.PrintThenTripleFault());
        try
        {
            string qemuOnce = QemuReference.RunLinux(image, "", "32M");
            string qemuRebooting = QemuReference.RunRebooting(image, output => output.Length >= 5);
            CliProcess.Result once = CliProcess.Run("run", image);
            CliProcess.Result rebooting = CliProcess.Run("run", image, "--reboot", "--max-instructions", "200");
            Assert.Multiple(() =>
            {
                Assert.That(qemuOnce, Is.EqualTo("t"), "QEMU -no-reboot: one boot");
                Assert.That(qemuRebooting, Does.Match("^t{5,}$"), "QEMU: a boot after each triple fault, one byte each");
                Assert.That((once.ExitCode, once.Text), Is.EqualTo((ExitStatus.GuestFault, qemuOnce)), once.Stderr);
                Assert.That(once.Stderr, Does.Contain("triple-faulted, which resets a PC; the reset ends the run"));
                Assert.That(once.Stderr, Does.Contain("triple fault: #DE (vector 0) could not be delivered"));
                Assert.That(once.Stderr, Does.Contain("EIP="), "the registers, as for a fault");
                AssertOneByteABoot(rebooting, 200, 't', "triple fault: #DE .*, which resets a PC; booting it again", "eight instructions a boot, as under QEMU");
            });
        }
        finally
        {
            File.Delete(image);
        }
    }

    /// <summary>
    /// A PC keeps its RTC's battery-backed CMOS RAM across a reset, and its firmware then sets registers A and B again.
    /// The guest prints CMOS byte 0x48 (as a letter) and registers B and A (hex), then increments byte 0x48, writes
    /// 0x7F to B and 0x2F to A, and resets: each boot under <c>run --reboot</c> must print what it prints under QEMU
    /// (which reboots it by default, with SeaBIOS's POST in between): the count goes on, B and A are as set at POST.
    /// </summary>
    [Test]
    public void ARebootKeepsTheCmosRamAsUnderQemu()
    {
        string image = Path.Combine(Path.GetTempPath(), $"hybridvmm-cmos-{Guid.NewGuid():N}.elf");
        File.WriteAllBytes(image, FlatKernel.Build(a =>
        {
            Iced.Intel.Label hex = a.CreateLabel(), digit = a.CreateLabel(), letter = a.CreateLabel();
            void Select(byte register) { a.mov(al, register); a.@out(0x70, al); }
            a.mov(esp, 0x80000); // Multiboot leaves ESP undefined
            a.mov(dx, 0x3F8);
            Select(0x48); a.@in(al, 0x71); a.mov(bl, al); a.add(al, (byte)'a'); a.@out(dx, al);
            Select(0x0B); a.@in(al, 0x71); a.call(hex);
            Select(0x0A); a.@in(al, 0x71); a.call(hex);
            a.mov(al, (byte)' '); a.@out(dx, al);
            a.inc(bl); Select(0x48); a.mov(al, bl); a.@out(0x71, al);
            Select(0x0B); a.mov(al, 0x7F); a.@out(0x71, al);
            Select(0x0A); a.mov(al, 0x2F); a.@out(0x71, al);
            a.mov(al, 0xFE); a.@out(0x64, al);
            a.hlt();
            a.Label(ref hex); // prints AL as two hex digits
            a.mov(ah, al); a.shr(al, 4); a.call(digit); a.mov(al, ah); a.and(al, 15);
            a.Label(ref digit);
            a.add(al, (byte)'0'); a.cmp(al, (byte)'9'); a.jbe(letter); a.add(al, 7);
            a.Label(ref letter);
            a.@out(dx, al); a.ret();
        }));
        try
        {
            CliProcess.Result ours = CliProcess.Run("run", image, "--reboot", "--max-instructions", "600");
            string qemu = QemuReference.RunRebooting(image, output => output.Length >= ours.Text.Length);
            Assert.Multiple(() =>
            {
                Assert.That(ours.ExitCode, Is.EqualTo(ExitStatus.InstructionLimit), ours.Stderr);
                Assert.That(ours.Text.Length, Is.GreaterThanOrEqualTo(6 * 5), "five boots at least");
                Assert.That(qemu, Does.StartWith("a0226 b0326 c0326 "), "QEMU: the count goes on, B keeps only DSE");
                Assert.That(qemu, Does.StartWith(ours.Text), "each boot prints what it prints under QEMU");
            });
        }
        finally
        {
            File.Delete(image);
        }
    }

    /// <summary>
    /// A <c>run --reboot --max-instructions <paramref name="limit"/></c> of a guest that prints <paramref name="printed"/>
    /// and resets: it ends on the limit over many boots, printed one byte a boot, and said <paramref name="rebootLine"/>
    /// (a regular expression) once for each boot after the first.
    /// </summary>
    private static void AssertOneByteABoot(CliProcess.Result rebooting, int limit, char printed, string rebootLine, string why)
    {
        System.Text.RegularExpressions.Match boots = System.Text.RegularExpressions.Regex.Match(rebooting.Stderr, $@"reached the instruction limit \({limit}, over (\d+) boots\)");
        Assert.That(rebooting.ExitCode, Is.EqualTo(ExitStatus.InstructionLimit), rebooting.Stderr);
        Assert.That(boots.Success, Is.True, rebooting.Stderr);
        int count = boots.Success ? int.Parse(boots.Groups[1].Value) : 0;
        Assert.That(count, Is.GreaterThan(10), $"{why}, {limit} in all");
        Assert.That(rebooting.Text, Is.EqualTo(new string(printed, count)), "one byte a boot");
        Assert.That(System.Text.RegularExpressions.Regex.Matches(rebooting.Stderr, rebootLine).Count, Is.EqualTo(count - 1));
    }

    [Test]
    public void TheMultibootCommandLineIsTheImagePathASpaceAndTheAppendedArgumentsAsQemuGivesThem()
    {
        string image = Repository.GuestElf("bootinfo");
        CliProcess.Result result = CliProcess.Run("run", image, "--append", "alpha beta=2", "--memory", "32M");
        Assert.That(result.Text, Does.Contain($"cmdline [{image} alpha beta=2]\n"));
        Assert.That(result.Text, Does.Contain("HybridVmm"));
    }

    [Test]
    public void WithoutAppendTheMultibootCommandLineIsTheImagePathAndASpaceAsUnderQemu()
    {
        string image = Repository.GuestElf("bootinfo");
        CliProcess.Result result = CliProcess.Run("run", image, "--memory", "32M");
        Assert.That(result.Text, Does.Contain($"cmdline [{image} ]\n"));
    }

    [Test]
    public void AnRtcBaseThatIsNotADateIsAUsageError()
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("hello"), "--rtc-base", "yesterday");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Usage));
        Assert.That(result.Stderr, Does.Contain("--rtc-base 'yesterday'"));
    }

    [Test]
    public void RunOffersSyntheticDevicesAndTheSyntheticConsolePrintsToStdout()
    {
        CliProcess.Result uart = CliProcess.Run("run", Repository.GuestElf("enlcon"), "--append", "uart");
        CliProcess.Result synth = CliProcess.Run("run", Repository.GuestElf("enlcon"), "--append", "synth", "--synthetic", "synthcon");
        Assert.That((uart.ExitCode, synth.ExitCode), Is.EqualTo((0, 0)), synth.Stderr);
        Assert.That(synth.Text, Is.EqualTo(uart.Text));
        Assert.That(synth.Text, Does.EndWith("enlcon: done\n"));
    }

    [Test]
    public void TraceOptionWritesTheReadableTraceFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.trace");
        try
        {
            CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("hello"), "--trace", path);
            Assert.That(result.ExitCode, Is.Zero, result.Stderr);
            string[] lines = File.ReadAllLines(path);
            Assert.That(lines.First(), Does.Contain("Lifecycle").And.Contain("created"));
            Assert.That(lines.Last(), Does.Contain("stopped guest-exit value=0"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void AMissingImageIsNoInput()
    {
        CliProcess.Result result = CliProcess.Run("run", "/nonexistent/kernel.elf");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.NoInput));
        Assert.That(result.Stderr, Does.StartWith("hybridvmm: error: cannot read image"));
    }

    [Test]
    public void AMalformedImageIsRejectedWithOneLineAndTheInvalidImageStatus()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "this is not a kernel");
            CliProcess.Result result = CliProcess.Run("run", path);
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.InvalidImage));
            Assert.That(result.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(result.Stderr, Does.Contain("not a Multiboot v1 kernel"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ARejectedImageDoesNotTruncateAnExistingTraceFile()
    {
        string image = Path.GetTempFileName();
        string trace = Path.GetTempFileName();
        try
        {
            File.WriteAllText(image, "junk");
            File.WriteAllText(trace, "previous trace\n");
            CliProcess.Result result = CliProcess.Run("run", image, "--trace", trace);
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.InvalidImage));
            Assert.That(File.ReadAllText(trace), Is.EqualTo("previous trace\n"));
        }
        finally
        {
            File.Delete(image);
            File.Delete(trace);
        }
    }

    [TestCase("run", "--memory", "lots")]
    [TestCase("run", "--memory", "5G")]
    [TestCase("run")]
    [TestCase("--no-such-flag")]
    public void BadCommandLinesGetTheUsageStatus(params string[] args)
    {
        if (args.Length > 1)
        {
            args = args.Append(Repository.GuestElf("hello")).ToArray();
        }

        CliProcess.Result result = CliProcess.Run(args);
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Usage));
        Assert.That(result.Stderr, Does.StartWith("hybridvmm: error:"));
    }

    [Test]
    public void TheDefaultScenarioBootsSeveralGuestsAndEndsWithASummaryTable()
    {
        CliProcess.Result result = CliProcess.Run();
        Assert.That(result.ExitCode, Is.Zero, result.Stderr);
        Assert.That(result.Text, Does.Contain("hello     | Hello from a HybridVmm guest!"));
        Assert.That(result.Text, Does.Contain("asmhello  |"));
        Assert.That(result.Text, Does.Contain("cpu       | crc32 "));
        Assert.That(result.Text, Does.Contain("instructions").And.Contain("virtual time"));
    }
}
