using HybridVmm.HostOS.Encapsulation;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Testing;
using HybridVmm.Tests.Lecture;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Snapshots and live migration of a VM with two vCPUs, through the CLI between processes: the guest's output after a
/// save, a restore or a migration equals an uninterrupted run's. The guest makes that a strict test: its bootstrap
/// processor starts the second vCPU with INIT and a start-up IPI, and prints, again and again, how far the other has
/// counted and its own time stamp counter. Both depend on the order in which the vCPUs took turns and on the time each
/// had reached, so a restored vCPU that loses its place in the round, a clock that jumps, or an application processor
/// that runs before its start-up IPI prints other numbers.
/// </summary>
public class MultiprocessorSnapshotTests
{
    private const uint Trampoline = 0x8000, Counter = 0x7000, RanAtReset = 0x7100, ResetVector = 0xF_FFF0, IcrLow = 0xFEE0_0300, IcrHigh = 0xFEE0_0310;

    /// <summary>Before the start-up IPI: the bootstrap processor's first spin takes about 60,000 instructions.</summary>
    private const long BeforeTheStartupIpi = 20_000;

    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("hvsmpsnap").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    /// <summary>The application processor, in real mode at the SIPI vector: it counts at <see cref="Counter"/> for ever.</summary>
    private static byte[] ApCode() => GuestCode.Assemble(a =>
    {
        a.xor(ax, ax);
        a.mov(ds, ax);
        var top = a.CreateLabel();
        a.Label(ref top);
        a.inc(__dword_ptr[Counter]);
        a.jmp(top);
    }, Trampoline, bitness: 16);

    /// <summary>
    /// The bootstrap processor: spins, prints "smp", starts vCPU 1 (INIT, then a start-up IPI to 0x8000), then <paramref name="lines"/> (24) times spins
    /// (<paramref name="spin"/> turns of DEC and JNZ) and prints the counter, the low half of its TSC and whether any vCPU ran the reset vector's code as hex
    /// on COM1, and exits with status 0 through port 0xF4.
    /// </summary>
    internal static byte[] Guest(int lines = 24, int spin = 7_001) => FlatKernel.Build(a =>
    {
        var hex = a.CreateLabel();
        a.mov(esp, 0x9_0000);
        byte[] ap = ApCode();
        Array.Resize(ref ap, (ap.Length + 3) & ~3);
        for (int i = 0; i < ap.Length; i += 4)
        {
            a.mov(__dword_ptr[Trampoline + (uint)i], BitConverter.ToInt32(ap, i));
        }

        // At the reset vector F000:FFF0, where INIT leaves a processor: code that marks that it ran. An AP waiting for its
        // start-up IPI never runs it, here or under QEMU; one restored as runnable would, and every line would show it.
        a.mov(__dword_ptr[ResetVector], 0x7100_06C6);   // mov byte [0x7100], 1
        a.mov(__dword_ptr[ResetVector + 4], 0xFEEB_01); // jmp $
        Spin(a, 20_000);
        foreach (char c in "smp\n")
        {
            // Each byte is an intercept that ends the boot vCPU's slice: the other vCPU's turn comes before the IPIs.
            a.mov(al, (byte)c);
            a.mov(dx, 0x3F8);
            a.@out(dx, al);
        }

        a.mov(__dword_ptr[IcrHigh], 1 << 24);   // destination: APIC ID 1
        a.mov(__dword_ptr[IcrLow], 0x4500);      // INIT, level assert
        a.mov(__dword_ptr[IcrLow], 0x4608);      // start-up, vector 0x08: 0x8000
        a.mov(edi, lines);
        var line = a.CreateLabel();
        a.Label(ref line);
        Spin(a, spin);
        a.mov(esi, __dword_ptr[Counter]);
        a.call(hex);
        a.mov(al, (byte)' ');
        a.mov(dx, 0x3F8);
        a.@out(dx, al);
        a.rdtsc();
        a.mov(esi, eax);
        a.call(hex);
        a.mov(al, (byte)' ');
        a.mov(dx, 0x3F8);
        a.@out(dx, al);
        a.movzx(esi, __byte_ptr[RanAtReset]);
        a.call(hex);
        a.mov(al, (byte)'\n');
        a.mov(dx, 0x3F8);
        a.@out(dx, al);
        a.dec(edi);
        a.jnz(line);
        a.mov(eax, 0);
        a.@out(0xF4, eax);

        // hex: ESI as eight hex digits on COM1.
        a.Label(ref hex);
        a.mov(ecx, 8);
        var digit = a.CreateLabel();
        var decimalDigit = a.CreateLabel();
        a.Label(ref digit);
        a.rol(esi, 4);
        a.mov(eax, esi);
        a.and(eax, 0xF);
        a.cmp(eax, 10);
        a.jb(decimalDigit);
        a.add(eax, 'a' - 10 - '0');
        a.Label(ref decimalDigit);
        a.add(eax, '0');
        a.mov(dx, 0x3F8);
        a.@out(dx, al);
        a.dec(ecx);
        a.jnz(digit);
        a.ret();
    });

    private static void Spin(Assembler a, int iterations)
    {
        a.mov(ecx, iterations);
        var top = a.CreateLabel();
        a.Label(ref top);
        a.dec(ecx);
        a.jnz(top);
    }

    private string WriteGuest()
    {
        string path = Path.Combine(_dir, "smp.elf");
        File.WriteAllBytes(path, Guest());
        return path;
    }

    private static CliProcess.Result Uninterrupted(string guest)
    {
        CliProcess.Result run = CliProcess.Run("run", guest, "--cpus", "2");
        Assert.That(run.ExitCode, Is.Zero, run.Stderr);
        string[] lines = run.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(25), run.Text);
        Assert.That(lines[1..], Has.All.EndWith(" 00000000"), "no vCPU ran the reset vector's code");
        return run;
    }

    [TestCase(BeforeTheStartupIpi, TestName = "A two-vCPU guest saved before it starts its second vCPU continues exactly in another process")]
    [TestCase(163_457L, TestName = "A two-vCPU guest saved while both vCPUs run continues exactly in another process")]
    [TestCase(97_771L, TestName = "A two-vCPU guest saved in its first lines continues exactly in another process")]
    public void ATwoVcpuGuestSavedAndRestoredThroughTheCliPrintsWhatAnUninterruptedRunPrints(long saveAt)
    {
        string guest = WriteGuest(), snapshot = Path.Combine(_dir, "smp.snap");
        CliProcess.Result whole = Uninterrupted(guest);

        CliProcess.Result saved = CliProcess.Run("run", guest, "--cpus", "2", "--save-at", saveAt.ToString(), "--save-to", snapshot);
        Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);
        Assert.That(saved.Stderr, Does.Contain($"at instruction {saveAt} "));
        CliProcess.Result restored = CliProcess.Run("restore", snapshot);

        Assert.Multiple(() =>
        {
            Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
            Assert.That(saved.Text + restored.Text, Is.EqualTo(whole.Text));
        });
    }

    /// <summary>
    /// Beyond the output: every trace event of the saving run is the uninterrupted run's, and every event of the restored
    /// run (after its "created" and "started") is the uninterrupted run's next one, with the same vCPU and text, all at
    /// one constant distance in machine time (the restored machine's clock starts at 0; the guest's clock goes on). A vCPU
    /// that took another turn would move an event or change the distance.
    /// </summary>
    [Test]
    public void TheTwoVcpuTraceAfterTheRestoreIsTheUninterruptedTraceShiftedInMachineTimeOnly()
    {
        string guest = WriteGuest(), snapshot = Path.Combine(_dir, "smp.snap");
        string whole = Path.Combine(_dir, "whole.trace"), before = Path.Combine(_dir, "before.trace"), after = Path.Combine(_dir, "after.trace");
        Assert.That(CliProcess.Run("run", guest, "--cpus", "2", "--trace", whole).ExitCode, Is.Zero);
        Assert.That(CliProcess.Run("run", guest, "--cpus", "2", "--save-at", "163457", "--save-to", snapshot, "--trace", before).ExitCode, Is.Zero);
        Assert.That(CliProcess.Run("restore", snapshot, "--trace", after).ExitCode, Is.Zero);

        static (long Time, string Event)[] Events(string path) =>
        [
            .. File.ReadAllLines(path).Select(l => l.TrimStart()).Select(l => (long.Parse(l[..l.IndexOf(' ')]), l[l.IndexOf(' ')..].TrimStart())),
        ];
        (long Time, string Event)[] u = Events(whole), s = Events(before), r = Events(after);
        Assert.That(s[^2].Event, Does.EndWith("Lifecycle paused at instruction 163457"));
        Assert.That(r[..2].Select(e => e.Event), Has.All.Contain("Lifecycle"), "created, started");
        (long Time, string Event)[] saved = s[2..^2], restored = r[2..], rest = u[(2 + saved.Length)..];
        Assert.Multiple(() =>
        {
            Assert.That(saved, Is.EqualTo(u[2..(2 + saved.Length)]), "the saving run is the uninterrupted run up to its pause");
            Assert.That(restored.Select(e => e.Event), Is.EqualTo(rest.Select(e => e.Event)));
            Assert.That(rest.Zip(restored, (a, b) => a.Time - b.Time).Distinct().Count(), Is.EqualTo(1), "one constant shift in machine time");
        });
    }

    [Test]
    public void ASnapshotOfTwoVcpusHoldsEachOnesRegistersAndRunState()
    {
        string guest = WriteGuest(), early = Path.Combine(_dir, "early.snap"), late = Path.Combine(_dir, "late.snap");
        Assert.That(CliProcess.Run("run", guest, "--cpus", "2", "--save-at", BeforeTheStartupIpi.ToString(), "--save-to", early).ExitCode, Is.Zero);
        Assert.That(CliProcess.Run("run", guest, "--cpus", "2", "--save-at", "163457", "--save-to", late).ExitCode, Is.Zero);

        VmSnapshot before = SnapshotFile.TryRead(early, out string error)!;
        Assert.That(before, Is.Not.Null, error);
        VmSnapshot after = SnapshotFile.TryRead(late, out error)!;
        Assert.That(after, Is.Not.Null, error);
        using (before.Memory)
        using (after.Memory)
        {
            Assert.Multiple(() =>
            {
                Assert.That(before.Processors, Is.EqualTo(2));
                Assert.That(before.Enlightened.VirtualProcessors.Select(v => v.Run?.WaitingForSipi), Is.EqualTo(new bool?[] { false, true }));
                Assert.That(before.ApplicationProcessors[0].InstructionsRetired, Is.Zero, "the AP has not run");
                Assert.That(after.Cpu.InstructionsRetired, Is.EqualTo(163_457));
                Assert.That(after.Enlightened.VirtualProcessors.Select(v => v.Run?.WaitingForSipi), Is.EqualTo(new bool?[] { false, false }));
                Assert.That(after.ApplicationProcessors[0].InstructionsRetired, Is.Positive, "the AP runs its counting loop");
                Assert.That(after.ApplicationProcessors[0].Cs, Is.EqualTo(0x0800), "in real mode at the start-up vector's segment");
            });
        }
    }

    [Test]
    public void ATwoVcpuSnapshotReadAndWrittenAgainIsTheSameFileAndAOneVcpuSnapshotKeepsItsChunks()
    {
        string guest = WriteGuest(), path = Path.Combine(_dir, "smp.snap");
        Assert.That(CliProcess.Run("run", guest, "--cpus", "2", "--save-at", "163457", "--save-to", path).ExitCode, Is.Zero);
        byte[] file = File.ReadAllBytes(path);
        VmSnapshot smp = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(smp, Is.Not.Null, error);
        VmSnapshot one = SnapshotFormat.TryDeserialize(Snapshots.SavedHello(), out error)!;
        Assert.That(one, Is.Not.Null, error);

        Assert.Multiple(() =>
        {
            Assert.That(SnapshotFormat.Serialize(smp), Is.EqualTo(file), "nothing of the two vCPUs is lost or reordered");
            Assert.That(Tags(file).Where(t => t.EndsWith(".vp1")), Is.EqualTo(new[] { "cpu.vp1", "interrupts.vp1", "synic.vp1", "apic.vp1", "runstate.vp1" }));
            Assert.That(Tags(SnapshotFormat.Serialize(one)).Where(t => t.Contains(".vp")), Is.EqualTo(new[] { "cpu.vp0", "interrupts.vp0", "synic.vp0", "apic.vp0" }),
                "a snapshot of one vCPU is what it was before multiprocessor snapshots");
        });
    }

    private static string[] Tags(byte[] file) =>
        [.. Hardware.SavedState.SavedStateContainerReader.TryOpen(new MemoryStream(file), out _)!.Chunks.Select(c => c.Tag)];

    [Test]
    public void ATwoVcpuGuestSavedAgainAfterARestoreStillContinuesExactly()
    {
        string guest = WriteGuest(), first = Path.Combine(_dir, "first.snap"), second = Path.Combine(_dir, "second.snap");
        CliProcess.Result whole = Uninterrupted(guest);

        CliProcess.Result saved = CliProcess.Run("run", guest, "--cpus", "2", "--save-at", "97771", "--save-to", first);
        CliProcess.Result again = CliProcess.Run("restore", first, "--save-at", "211113", "--save-to", second);
        CliProcess.Result rest = CliProcess.Run("restore", second);

        Assert.Multiple(() =>
        {
            Assert.That(again.ExitCode, Is.Zero, again.Stderr);
            Assert.That(rest.ExitCode, Is.Zero, rest.Stderr);
            Assert.That(saved.Text + again.Text + rest.Text, Is.EqualTo(whole.Text));
        });
    }

    [TestCase(BeforeTheStartupIpi, TestName = "A two-vCPU guest live-migrated before it starts its second vCPU prints what an unmigrated run prints")]
    [TestCase(163_457L, TestName = "A two-vCPU guest live-migrated while both vCPUs run prints what an unmigrated run prints")]
    public void ATwoVcpuGuestLiveMigratedBetweenProcessesPrintsWhatAnUnmigratedRunPrints(long migrateAt)
    {
        string guest = WriteGuest();
        CliProcess.Result whole = Uninterrupted(guest);
        string token = LiveMigrationTests.TokenFile("a-shared-migration-token");
        try
        {
            (CliProcess.Result source, int targetStatus, string targetOut, string targetErr) = LiveMigrationTests.MigrateBetweenProcesses(
                ["--token-file", token], ["run", guest, "--cpus", "2", "--migrate-at", migrateAt.ToString(), "--token-file", token]);
            Assert.Multiple(() =>
            {
                Assert.That(source.ExitCode, Is.Zero, source.Stderr);
                Assert.That(source.Stderr, Does.Contain("downtime"));
                Assert.That(targetStatus, Is.Zero, targetErr);
                Assert.That(source.Text + targetOut, Is.EqualTo(whole.Text));
            });
        }
        finally
        {
            File.Delete(token);
        }
    }
}
