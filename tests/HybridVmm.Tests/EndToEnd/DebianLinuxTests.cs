using System.Text;
using System.Text.RegularExpressions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Debian's own i386 kernel (linux-image-686) and BusyBox (busybox-static), fetched by samples/linux/fetch-debian.sh
/// and packed by make-initramfs.sh (both run by .ci/run), booted through the Linux 32-bit boot protocol to the
/// initramfs's /init (samples/linux/init.sh), and compared with the same kernel, initramfs and command line under
/// <c>qemu-system-i386 -kernel -initrd</c>.
/// </summary>
[NonParallelizable]
public class DebianLinuxTests
{
    private const string CommandLine = "console=ttyS0 earlyprintk=serial,ttyS0,115200 cryptomgr.notests panic=-1";

    /// <summary>A safety net only: the boot to /init and its reboot take about 3.5 G instructions.</summary>
    private const long InstructionBudget = 10_000_000_000;

    private static string Debian(string file) => Path.Combine(Repository.Root, "samples", "linux", "debian", file);

    private static void Require(string path)
    {
        if (File.Exists(path)) return;
        string why = $"{path} is missing: run samples/linux/fetch-debian.sh and make-initramfs.sh";
        if (Environment.GetEnvironmentVariable("CI") is not null) Assert.Fail(why + " (.ci/run should have)");
        Assert.Ignore(why);
    }

    /// <summary>"[    0.000000] text" → "text": the time stamps are the only part two machines may differ in.</summary>
    private static string[] Lines(string output) =>
        output.Split('\n').Select(l => Regex.Replace(l.TrimEnd('\r'), @"^\[\s*\d+\.\d+\] ", "")).ToArray();

    /// <summary>One uninterrupted boot, shared by the tests that compare with it.</summary>
    private static readonly Lazy<CliProcess.Result> Uninterrupted = new(() => CliProcess.RunLong(TimeSpan.FromMinutes(20),
        "run", Debian("vmlinuz"), "--initrd", Debian("initramfs.cpio.gz"), "--memory", "128M", "--append", CommandLine,
        "--max-instructions", InstructionBudget.ToString()));

    /// <summary>One uninterrupted boot with two vCPUs, shared by the tests that compare with it.</summary>
    private static readonly Lazy<CliProcess.Result> UninterruptedTwoCpus = new(() => CliProcess.RunLong(TimeSpan.FromMinutes(20),
        "run", Debian("vmlinuz"), "--initrd", Debian("initramfs.cpio.gz"), "--memory", "128M", "--cpus", "2", "--append", CommandLine,
        "--max-instructions", InstructionBudget.ToString()));

    /// <summary>With two vCPUs, the boot vCPU at 2.7 G instructions: both processors are up and the kernel probes its devices.</summary>
    private const long SaveWithBothCpusUp = 2_700_000_000;

    /// <summary>Saved mid-decompression, while the bzImage's own XZ decompressor runs (about 2.3 G instructions in all).</summary>
    private const long SaveInTheDecompressor = 1_500_000_000;

    /// <summary>Saved again later in the boot: at 2.99 G instructions this command line's kernel is loading its X.509 certificates.</summary>
    private const long SaveInTheKernel = 2_990_000_000;

    /// <summary>
    /// The translator changes the speed of a real OS and nothing else: the boot is saved once the kernel proper runs
    /// (paging on, interrupts and timers live), then the next 200 M instructions run from that snapshot with
    /// <c>--tier interp</c> and with <c>--tier jit</c>. Both print the same bytes and write the same trace, byte for byte.
    /// (The decompressor before it runs translated in every other Linux test, whose output is compared with QEMU's.)
    /// </summary>
    [Test]
    public void TheKernelRunsTheSameUnderTheTranslatorAndTheInterpreter()
    {
        Require(Debian("vmlinuz"));
        Require(Debian("initramfs.cpio.gz"));
        string dir = Directory.CreateTempSubdirectory("hvlinuxtier").FullName;
        try
        {
            string snapshot = Path.Combine(dir, "kernel.snap");
            CliProcess.Result boot = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", Debian("vmlinuz"), "--initrd", Debian("initramfs.cpio.gz"),
                "--memory", "128M", "--append", CommandLine, "--save-at", "2450000000", "--save-to", snapshot);
            Assert.That(boot.ExitCode, Is.Zero, boot.Stderr);
            CliProcess.Result Window(string tier) => CliProcess.RunLong(TimeSpan.FromMinutes(20), "--tier", tier, "restore", snapshot,
                "--max-instructions", "2650000000", "--trace", Path.Combine(dir, tier + ".trace"));
            CliProcess.Result interp = Window("interp");
            CliProcess.Result jit = Window("jit");
            Assert.Multiple(() =>
            {
                Assert.That(interp.Text, Does.Contain("smpboot: CPU0"), "the window is in the kernel's boot, after paging and interrupts are on");
                Assert.That(jit.ExitCode, Is.EqualTo(interp.ExitCode));
                Assert.That(jit.Text, Is.EqualTo(interp.Text));
                Assert.That(File.ReadAllBytes(Path.Combine(dir, "jit.trace")), Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, "interp.trace"))));
            });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Encapsulation of a real OS: the boot is saved in the middle of the decompressor, restored in a new process, saved
    /// again while the kernel boots (interrupts, timers, the UART's FIFO and every chipset device in flight), and
    /// restored to the end. The three processes' output, end to end, is the uninterrupted boot's, byte for byte.
    /// </summary>
    [Test]
    public void SavedInTheDecompressorAndAgainInTheKernelTheBootPrintsWhatItPrintsUninterrupted()
    {
        Require(Debian("vmlinuz"));
        Require(Debian("initramfs.cpio.gz"));
        string first = Path.Combine(Path.GetTempPath(), $"hybridvmm-linux-{Guid.NewGuid():N}-1.snap");
        string second = Path.ChangeExtension(first, ".2.snap");
        try
        {
            CliProcess.Result boot = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", Debian("vmlinuz"), "--initrd", Debian("initramfs.cpio.gz"),
                "--memory", "128M", "--append", CommandLine, "--save-at", SaveInTheDecompressor.ToString(), "--save-to", first);
            Assert.That(boot.ExitCode, Is.Zero, boot.Stderr);
            CliProcess.Result kernel = CliProcess.RunLong(TimeSpan.FromMinutes(20), "restore", first, "--save-at", SaveInTheKernel.ToString(), "--save-to", second);
            Assert.That(kernel.ExitCode, Is.Zero, kernel.Stderr);
            CliProcess.Result user = CliProcess.RunLong(TimeSpan.FromMinutes(20), "restore", second);
            string[] parts = [boot.Text, kernel.Text, user.Text];
            Assert.Multiple(() =>
            {
                Assert.That(parts[0], Does.Not.Contain("Linux version"), "the first save is before the kernel proper starts");
                Assert.That(parts[1], Does.Contain("Linux version").And.Not.Contain("init: done"), "the second save is in the kernel's boot");
                Assert.That(user.ExitCode, Is.Zero, user.Stderr);
                Assert.That(string.Concat(parts), Is.EqualTo(Uninterrupted.Value.Text));
            });
        }
        finally
        {
            File.Delete(first);
            File.Delete(second);
        }
    }

    [Test]
    public void BusyBoxInitPrintsWhatItPrintsUnderQemuAndTheKernelLogAgreesWhereTheMachinesDoNotDiffer()
    {
        string kernel = Debian("vmlinuz"), initrd = Debian("initramfs.cpio.gz");
        Require(kernel);
        Require(initrd);
        CliProcess.Result ours = Uninterrupted.Value;
        string[] log = Lines(Encoding.Latin1.GetString(ours.Stdout));
        string[] qemu = Lines(QemuReference.RunLinux(kernel, CommandLine, "128M", initrd));

        string[] userSpace = qemu.Where(l => l.StartsWith("init: ")).ToArray();
        Assert.That(userSpace, Has.Length.EqualTo(5), "QEMU's run of init.sh: " + string.Join('\n', qemu.TakeLast(20)));
        Assert.Multiple(() =>
        {
            // BusyBox's output, from the shell through the kernel's tty and 8250 driver (THRE interrupts) to COM1.
            Assert.That(log.Where(l => l.StartsWith("init: ")), Is.EqualTo(userSpace), string.Join('\n', log.TakeLast(40)));
            // init.sh ends with reboot -f: Linux resets through the keyboard controller, which stops the VM (0).
            Assert.That(ours.ExitCode, Is.Zero, ours.Stderr);
            Assert.That(ours.Stderr, Does.Contain("asked for a reset"));
        });

        string[] kernelLines =
        [
            .. qemu.Where(l => l.StartsWith("Linux version ")),
            // The first three ranges; QEMU's firmware then keeps RAM's top 128 KiB for its ACPI tables (HybridVmm's are in the BIOS area).
            .. qemu.Where(l => l.StartsWith("BIOS-e820: ")).Take(3),
            "printk: bootconsole [earlyser0] enabled",
            .. qemu.Where(l => l.StartsWith("Kernel command line: ")),
            // The firmware's ACPI tables, the I/O APIC and the PM timer as Linux finds them: symmetric I/O mode with the
            // PIT on the I/O APIC's input 2, and ACPI's S5 on the way out.
            .. qemu.Where(l => l.StartsWith("ACPI: PM-Timer IO Port: ") || l.StartsWith("smpboot: Allowing ") || l.StartsWith("..TIMER: ")
                || l is "ACPI: INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 dfl dfl)" or "ACPI: INT_SRC_OVR (bus 0 bus_irq 9 global_irq 9 high level)"
                    or "ACPI: Using ACPI (MADT) for SMP configuration information" or "APIC: Switch to symmetric I/O mode setup"
                    or "Enabling APIC mode:  Flat.  Using 1 I/O APICs" or "ACPI: Using IOAPIC for interrupt routing"
                    or "ACPI: PM: Preparing to enter system sleep state S5"),
            "Run /init as init process",
        ];
        Assert.That(kernelLines, Has.Length.EqualTo(17), "QEMU's log: " + string.Join('\n', qemu.Take(20)));
        Assert.That(log, Is.SupersetOf(kernelLines));
        Assert.That(log, Does.Contain("BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable"), "RAM above 1 MiB to the end");
    }
    /// <summary>
    /// Debian's PAE kernel (linux-image-686-pae) runs with PAE paging and execute-disable: it finds NX in CPUID, sets
    /// IA32_EFER.NXE and maps its data non-executable, and BusyBox prints what it prints under QEMU with NX
    /// (<c>-cpu qemu32,+nx</c>; QEMU's default CPU has no NX, and the kernel then says so); so does its fast boot, whose
    /// payload the host unpacks.
    /// </summary>
    [Test]
    public void ThePaeKernelBootsWithExecuteDisableAndInitPrintsWhatItPrintsUnderQemu()
    {
        string kernel = Debian("vmlinuz-pae"), initrd = Debian("initramfs.cpio.gz");
        Require(kernel);
        Require(initrd);
        CliProcess.Result ours = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", kernel, "--initrd", initrd, "--memory", "128M",
            "--append", CommandLine, "--max-instructions", InstructionBudget.ToString());
        CliProcess.Result fast = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", kernel, "--boot", "fast", "--initrd", initrd, "--memory", "128M",
            "--append", CommandLine, "--max-instructions", InstructionBudget.ToString());
        string[] log = Lines(Encoding.Latin1.GetString(ours.Stdout));
        string[] fastLog = Lines(Encoding.Latin1.GetString(fast.Stdout));
        string[] qemu = Lines(QemuReference.RunLinux(kernel, CommandLine, "128M", initrd, cpu: "qemu32,+nx"));

        string[] userSpace = qemu.Where(l => l.StartsWith("init: ")).ToArray();
        Assert.That(userSpace, Has.Length.EqualTo(5), "QEMU's run of init.sh: " + string.Join('\n', qemu.TakeLast(20)));
        Assert.That(userSpace[0], Does.EndWith("-686-pae"), "the PAE kernel's uname");
        Assert.Multiple(() =>
        {
            Assert.That(log.Where(l => l.StartsWith("init: ")), Is.EqualTo(userSpace), string.Join('\n', log.TakeLast(40)));
            Assert.That(ours.ExitCode, Is.Zero, ours.Stderr);
            Assert.That(fastLog.Where(l => l.StartsWith("init: ")), Is.EqualTo(userSpace), "--boot fast: " + fast.Stderr);
            Assert.That(fast.ExitCode, Is.Zero, fast.Stderr);
            string[] shared = [.. qemu.Where(l => l is "NX (Execute Disable) protection: active" || l.StartsWith("NX-protecting the kernel data: "))];
            Assert.That(shared, Has.Length.EqualTo(2), "QEMU's log: " + string.Join('\n', qemu.Take(60)));
            Assert.That(log, Is.SupersetOf(shared));
        });
    }

    /// <summary>
    /// A guest of 4 GiB (issue 14): Debian's PAE kernel finds the RAM QEMU's machine has, 3 GiB below the PCI hole and
    /// 1 GiB from 4 GiB up, and sizes its zones as it does under QEMU (<c>-m 4G</c>, with PSE-36 and NX as our CPU has
    /// them); then it boots to init's last line. QEMU's firmware reserves 128 KiB more below the hole (its ACPI
    /// tables), so the kernel's lines about the RAM below 4 GiB are not compared. QEMU itself is stopped once the kernel
    /// has sized its memory: on this machine it did not reach init within five minutes at 4 GiB.
    /// </summary>
    [Test]
    public void ThePaeKernelFindsAndUsesTheRamAbove4GiBAsUnderQemu()
    {
        string kernel = Debian("vmlinuz-pae"), initrd = Debian("initramfs.cpio.gz");
        Require(kernel);
        Require(initrd);
        CliProcess.Result ours = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", kernel, "--boot", "fast", "--initrd", initrd, "--memory", "4G",
            "--append", CommandLine, "--max-instructions", InstructionBudget.ToString());
        string[] log = Lines(Encoding.Latin1.GetString(ours.Stdout));
        string[] qemu = Lines(QemuReference.RunLinuxUntil(kernel, CommandLine, "4G", initrd, "qemu32,+nx,+pse36",
            output => output.Contains("Memory: ", StringComparison.Ordinal)));

        static bool AboutTheRam(string line) =>
            (line.StartsWith("BIOS-e820: [mem 0x00000001", StringComparison.Ordinal))
            || line.EndsWith("MB HIGHMEM available.", StringComparison.Ordinal) || line.EndsWith("MB LOWMEM available.", StringComparison.Ordinal)
            || line.StartsWith("  Normal   [mem ", StringComparison.Ordinal) || line.StartsWith("  HighMem  [mem ", StringComparison.Ordinal)
            || line.StartsWith("Initializing HighMem for node 0 ", StringComparison.Ordinal);
        string[] reference = [.. qemu.Where(AboutTheRam)];
        Assert.That(reference, Has.Length.EqualTo(6), "QEMU's log: " + string.Join('\n', qemu.Take(80)));
        Assert.That(reference[0], Is.EqualTo("BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] usable"), "QEMU's RAM above 4 GiB");
        Assert.Multiple(() =>
        {
            Assert.That(log.Where(AboutTheRam), Is.EqualTo(reference), string.Join('\n', log.Take(80)));
            Assert.That(log, Does.Contain("init: done"), string.Join('\n', log.TakeLast(20)));
            Assert.That(ours.ExitCode, Is.Zero, ours.Stderr);
        });
    }

    /// <summary>
    /// Enough for two whole boots and their resets (each boot to init.sh's reboot -f takes about 3.15 G instructions, the
    /// same every time) and the start of a third, still in its decompressor: <c>run --reboot</c> then ends on the
    /// instruction limit.
    /// </summary>
    private const long TwoBootsBudget = 6_400_000_000;

    /// <summary>
    /// <c>run --reboot</c> boots Linux again when init.sh's <c>reboot -f</c> resets the machine, as QEMU does without
    /// <c>-no-reboot</c>: BusyBox's lines of two boots equal those of QEMU's first two, the same kernel boots each time,
    /// and the RTC runs on across the reset, as a PC's does.
    /// </summary>
    [Test]
    public void WithRebootTheResetBootsLinuxAgainAsUnderQemu()
    {
        string kernel = Debian("vmlinuz"), initrd = Debian("initramfs.cpio.gz");
        Require(kernel);
        Require(initrd);
        string qemu = QemuReference.RunLinuxRebooting(kernel, CommandLine, "128M", initrd,
            output => Regex.Matches(output, "init: done").Count >= 2);
        string[] qemuInit = Lines(qemu).Where(l => l.StartsWith("init: ")).Take(10).ToArray();
        Assert.That(qemuInit, Has.Length.EqualTo(10), "QEMU's two boots: " + qemu);

        CliProcess.Result ours = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", kernel, "--initrd", initrd, "--memory", "128M",
            "--append", CommandLine, "--reboot", "--max-instructions", TwoBootsBudget.ToString());
        string output = Encoding.Latin1.GetString(ours.Stdout);
        string[] boots = output.Split("Linux version ");
        Assert.Multiple(() =>
        {
            Assert.That(Lines(output).Where(l => l.StartsWith("init: ")).Take(10), Is.EqualTo(qemuInit), output);
            Assert.That(boots, Has.Length.EqualTo(3), "the kernel's banner twice (the third boot ends in its decompressor)");
            Assert.That(boots.Length > 2 && boots[2].Split('\n')[0] == boots[1].Split('\n')[0], Is.True, "the same kernel booted twice");
            // The RTC, battery-backed on a PC, runs on across the reset: the second boot reads a later time.
            long[] audit = Regex.Matches(output, @"audit\((\d+)\.").Select(m => long.Parse(m.Groups[1].Value)).ToArray();
            Assert.That(audit, Has.Length.EqualTo(2).And.Ordered.Ascending.And.Unique, "the RTC's seconds at each boot's audit start");
            // By as much as one boot lasts in virtual time (about 3.4 s to the reset: the decompressor, then the kernel to
            // init's reboot), not twice that, as when the new RTC counted the old boot's time again.
            long[] set = Regex.Matches(output, @"setting system clock to [^(]* \((\d+)\)").Select(m => long.Parse(m.Groups[1].Value)).ToArray();
            Assert.That(set, Has.Length.EqualTo(2));
            Assert.That(set.Length == 2 ? set[1] - set[0] : 0, Is.InRange(3, 5), "the RTC's seconds between the two boots' readings");
            Assert.That(Regex.Matches(ours.Stderr, "reset the machine; booting it again").Count, Is.EqualTo(2), ours.Stderr);
            Assert.That(ours.ExitCode, Is.EqualTo(124), ours.Stderr);
            Assert.That(ours.Stderr, Does.Contain($"reached the instruction limit ({TwoBootsBudget}, over 3 boots)"));
        });
    }

    /// <summary>
    /// What <c>--boot fast</c> may change in the boot's output, and why: the kernel starts about 2.3 G instructions
    /// (two virtual seconds) sooner, so the RTC, the audit stamp, the TSC's calibration against the PM timer and the
    /// sched_clock offsets read other times; and the decompressor's KASLR places the kernel at another physical address
    /// (the fast boot places it at LOAD_PHYSICAL_ADDR, as with nokaslr), which moves 64 KiB of the reserved memory.
    /// </summary>
    private static readonly string[] MayDifferWithTheFastBoot =
    [
        "Memory: ", "audit: type=2000 audit(", "rtc_cmos rtc_cmos: setting system clock to ", "sched_clock: Marking stable ",
        "tsc: Detected ", "clocksource: tsc-early: ", "Calibrating delay loop ", "smpboot: Total of ",
    ];

    /// <summary>
    /// The fast boot (the payload unpacked on the host, the kernel entered past its decompressor) prints the
    /// decompressor's boot line for line, BusyBox's lines included, except the lines of <see cref="MayDifferWithTheFastBoot"/>.
    /// </summary>
    [Test]
    public void TheFastBootPrintsTheDecompressorsBootLineForLineButForTheClockAndTheKernelsPlacement()
    {
        Require(Debian("vmlinuz"));
        Require(Debian("initramfs.cpio.gz"));
        CliProcess.Result fast = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", Debian("vmlinuz"), "--boot", "fast", "--initrd", Debian("initramfs.cpio.gz"),
            "--memory", "128M", "--append", CommandLine, "--max-instructions", InstructionBudget.ToString());
        string[] ours = Lines(Encoding.Latin1.GetString(fast.Stdout)), full = Lines(Encoding.Latin1.GetString(Uninterrupted.Value.Stdout));
        Assert.That(fast.ExitCode, Is.Zero, fast.Stderr);
        Assert.That(ours, Has.Length.EqualTo(full.Length), string.Join('\n', ours.TakeLast(20)));
        string[] differing = [.. ours.Zip(full).Where(p => p.First != p.Second).Select(p => p.Second)];
        Assert.Multiple(() =>
        {
            Assert.That(ours.Where(l => l.StartsWith("init: ")).ToArray(), Has.Length.EqualTo(5));
            Assert.That(differing.Where(l => !MayDifferWithTheFastBoot.Any(l.StartsWith)), Is.Empty, "lines that differ from the decompressor's boot");
            Assert.That(differing, Has.Some.StartWith("rtc_cmos rtc_cmos: setting system clock to "), "the fast kernel starts sooner in virtual time");
        });
    }

    /// <summary>
    /// Two virtual processors: Linux finds both in the MADT, starts the second with INIT and start-up IPIs into its
    /// real-mode trampoline, and BusyBox's nproc reports 2, as under <c>qemu-system-i386 -smp 2</c>.
    /// </summary>
    [Test]
    public void WithTwoVirtualProcessorsLinuxBringsUpBothAndInitPrintsWhatItPrintsUnderQemu()
    {
        string kernel = Debian("vmlinuz"), initrd = Debian("initramfs.cpio.gz");
        Require(kernel);
        Require(initrd);
        CliProcess.Result ours = UninterruptedTwoCpus.Value;
        string[] log = Lines(Encoding.Latin1.GetString(ours.Stdout));
        string[] qemu = Lines(QemuReference.RunLinux(kernel, CommandLine, "128M", initrd, processors: 2));

        string[] userSpace = qemu.Where(l => l.StartsWith("init: ")).ToArray();
        Assert.That(userSpace, Does.Contain("init: cpus=2 mounts=3"), "QEMU's run of init.sh: " + string.Join('\n', qemu.TakeLast(20)));
        Assert.Multiple(() =>
        {
            Assert.That(log.Where(l => l.StartsWith("init: ")), Is.EqualTo(userSpace), string.Join('\n', log.TakeLast(40)));
            Assert.That(ours.ExitCode, Is.Zero, ours.Stderr);
            string[] shared = [.. qemu.Where(l => l is "smpboot: Allowing 2 CPUs, 0 hotplug CPUs" or "smp: Brought up 1 node, 2 CPUs")];
            Assert.That(shared, Has.Length.EqualTo(2), "QEMU's log: " + string.Join('\n', qemu.Take(60)));
            Assert.That(log, Is.SupersetOf(shared));
        });
    }

    /// <summary>
    /// Encapsulation of a multiprocessor OS: the two-vCPU boot is saved once Linux has brought up its second processor
    /// (the boot vCPU at <see cref="SaveWithBothCpusUp"/> instructions, in the middle of a line of the kernel's log, both
    /// vCPUs taking timer interrupts), and restored in a new process. The two processes' output, end to end, is the uninterrupted
    /// two-vCPU boot's byte for byte, its time stamps included, and BusyBox prints what it prints under QEMU's <c>-smp 2</c>.
    /// </summary>
    [Test]
    public void WithTwoVirtualProcessorsTheBootSavedAfterTheSecondCpuIsUpPrintsWhatItPrintsUninterrupted()
    {
        string kernel = Debian("vmlinuz"), initrd = Debian("initramfs.cpio.gz");
        Require(kernel);
        Require(initrd);
        string snapshot = Path.Combine(Path.GetTempPath(), $"hybridvmm-linux-smp-{Guid.NewGuid():N}.snap");
        try
        {
            CliProcess.Result boot = CliProcess.RunLong(TimeSpan.FromMinutes(20), "run", kernel, "--initrd", initrd, "--memory", "128M",
                "--cpus", "2", "--append", CommandLine, "--max-instructions", InstructionBudget.ToString(),
                "--save-at", SaveWithBothCpusUp.ToString(), "--save-to", snapshot);
            Assert.That(boot.ExitCode, Is.Zero, boot.Stderr);
            CliProcess.Result rest = CliProcess.RunLong(TimeSpan.FromMinutes(20), "restore", snapshot);
            string[] qemu = Lines(QemuReference.RunLinux(kernel, CommandLine, "128M", initrd, processors: 2));
            string[] userSpace = qemu.Where(l => l.StartsWith("init: ")).ToArray();
            Assert.Multiple(() =>
            {
                Assert.That(Lines(boot.Text), Does.Contain("smp: Brought up 1 node, 2 CPUs"), "saved after the second vCPU is up");
                Assert.That(Lines(boot.Text).Where(l => l.StartsWith("init: ")), Is.Empty, "saved in the kernel's boot, before /init");
                Assert.That(rest.ExitCode, Is.Zero, rest.Stderr);
                Assert.That(boot.Text + rest.Text, Is.EqualTo(UninterruptedTwoCpus.Value.Text));
                Assert.That(userSpace, Does.Contain("init: cpus=2 mounts=3"), "QEMU's run of init.sh");
                Assert.That(Lines(rest.Text).Where(l => l.StartsWith("init: ")), Is.EqualTo(userSpace));
            });
        }
        finally
        {
            File.Delete(snapshot);
        }
    }
}
