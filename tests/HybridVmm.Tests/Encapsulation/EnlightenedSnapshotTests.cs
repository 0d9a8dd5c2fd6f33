using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Encapsulation of enlightened guests: a snapshot holds the vCPU's interrupt state, the synthetic MSRs, the SynIC,
/// the grants and event connections and the root's VMBus channels, so a guest saved at any instruction, even in the
/// middle of a channel's life, continues on a fresh hypervisor and prints exactly what an uninterrupted run prints.
/// </summary>
public class EnlightenedSnapshotTests
{
    private static readonly byte[] ConsoleInput = "ping from the host\n"u8.ToArray();

    private static VmConfiguration Enlcon() => new()
    {
        Name = "enlcon", Image = Repository.ReadGuest("enlcon"), MemoryBytes = 8u << 20, CommandLine = "synth",
        SyntheticDevices = new[] { "synthcon" }, ConsoleInput = ConsoleInput,
    };

    private static VmConfiguration Enlblk(string disk) => new()
    {
        Name = "enlblk", Image = Repository.ReadGuest("enlblk"), MemoryBytes = 8u << 20,
        SyntheticDevices = new[] { "synthblk", "synthcon" }, DiskImage = disk,
    };

    private static readonly Lazy<Run> UninterruptedEnlcon = new(() => RunUninterrupted(Enlcon()));

    [TestCase(1, TestName = "{m}(at the first instruction)")]
    [TestCase(0.02, TestName = "{m}(before the channel opens)")]
    [TestCase(0.7, TestName = "{m}(mid-output, channel open)")]
    [TestCase(0.999, TestName = "{m}(near the end)")]
    public void AnEnlightenedConsoleGuestSavedAndRestoredPrintsWhatAnUninterruptedRunPrints(double at)
    {
        Run expected = UninterruptedEnlcon.Value;
        long saveAt = at >= 1 ? (long)at : (long)(expected.Instructions * at);
        (Saved saved, Run restored) = SaveAndRestore(Enlcon(), saveAt);

        Assert.Multiple(() =>
        {
            Assert.That(restored.Exit.Reason, Is.EqualTo(StopReason.GuestExit), restored.Exit.Diagnostic);
            Assert.That(saved.Output + restored.Output, Is.EqualTo(expected.Output), "output before the save + after the restore = one uninterrupted run");
            Assert.That(restored.Instructions, Is.EqualTo(expected.Instructions));
        });
        TestContext.Out.WriteLine($"saved at {saveAt}: channel open={saved.Snapshot.Channels[0].Open}, grants={saved.Snapshot.Enlightened.Partition.Gpadls.Count}, output so far {saved.Output.Length} bytes");
    }

    [Test]
    public void TheMidOutputSnapshotHoldsTheOpenChannelItsGrantsAndTheSynic()
    {
        Run expected = UninterruptedEnlcon.Value;
        (Saved saved, _) = SaveAndRestore(Enlcon(), expected.Instructions * 7 / 10);
        VmSnapshot s = saved.Snapshot;
        Assert.Multiple(() =>
        {
            Assert.That(saved.Output.Length, Is.GreaterThan(0).And.LessThan(expected.Output.Length), "saved while the guest was printing");
            Assert.That(s.SyntheticDevices, Is.EqualTo(new[] { "synthcon" }));
            Assert.That(s.Enlightened.Partition.GuestOsId, Is.Not.Zero, "guest OS ID MSR");
            Assert.That(s.Enlightened.Partition.HypercallMsr & 1, Is.EqualTo(1ul), "hypercall page enabled");
            Assert.That(s.Enlightened.VirtualProcessors[0].Synic.SControl & 1, Is.EqualTo(1ul), "SynIC enabled");
            Assert.That(s.Enlightened.Partition.Gpadls, Has.Count.EqualTo(1), "the ring GPADL");
            Assert.That(s.Enlightened.Partition.EventConnections, Is.EqualTo(new[] { 0x1001u }));
            Assert.That(s.Channels[0].Open, Is.True);
            Assert.That(s.Channels[0].Gpadl, Is.EqualTo(s.Enlightened.Partition.Gpadls[0].Id));
        });
    }

    [Test]
    public void AGuestSavedAtEveryStepOfItsRunContinuesExactly()
    {
        // A sweep over the whole run: boot, hypercall setup, SynIC setup, offers, open, each batch, input, the end.
        Run expected = UninterruptedEnlcon.Value;
        int states = 0, pendingInterrupts = 0, open = 0, midOutput = 0;
        for (long saveAt = 997; saveAt < expected.Instructions; saveAt += expected.Instructions / 40)
        {
            (Saved saved, Run restored) = SaveAndRestore(Enlcon(), saveAt);
            Assert.That(saved.Output + restored.Output, Is.EqualTo(expected.Output), $"saved at instruction {saveAt}");
            Assert.That(restored.Instructions, Is.EqualTo(expected.Instructions), $"saved at instruction {saveAt}");
            states++;
            open += saved.Snapshot.Channels[0].Open ? 1 : 0;
            midOutput += saved.Output.Length > 0 && saved.Output.Length < expected.Output.Length ? 1 : 0;
            CpuStateHasPending(saved.Snapshot, ref pendingInterrupts);
        }

        TestContext.Out.WriteLine($"{states} save points, {open} with the channel open, {midOutput} mid-output, {pendingInterrupts} with an interrupt pending");
        Assert.That(open, Is.GreaterThan(states / 2));
        Assert.That(midOutput, Is.GreaterThan(states / 4));
    }

    [Test]
    public void ARestoredGuestSavedAgainContinuesExactly()
    {
        Run expected = UninterruptedEnlcon.Value;
        Saved first = Save(Enlcon(), expected.Instructions * 3 / 10);
        byte[] second;
        string middle;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(first.Snapshot, out VmCreationError? error)!;
            Assert.That(vm, Is.Not.Null, error?.Message);
            machine.System.Root.PauseAtInstruction(vm, expected.Instructions * 7 / 10);
            machine.RunAsync().GetAwaiter().GetResult();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));
            middle = machine.Output(vm);
            second = SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm));
        }

        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(SnapshotFormat.TryDeserialize(second, out _)!, out VmCreationError? error)!;
            Assert.That(vm, Is.Not.Null, error?.Message);
            machine.RunAsync().GetAwaiter().GetResult();
            Assert.That(first.Output + middle + machine.Output(vm), Is.EqualTo(expected.Output));
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(expected.Instructions));
        }
    }

    [TestCase(0.05)]
    [TestCase(0.4)]
    [TestCase(0.8)]
    [TestCase(0.99)]
    public void AnEnlightenedDiskGuestSavedAndRestoredPrintsAndWritesWhatAnUninterruptedRunDoes(double at)
    {
        string expectedDisk = BlankDisk(), disk = BlankDisk();
        try
        {
            Run expected = RunUninterrupted(Enlblk(expectedDisk));
            Assert.That(expected.Exit.Reason, Is.EqualTo(StopReason.GuestExit), expected.Exit.Diagnostic);
            (Saved saved, Run restored) = SaveAndRestore(Enlblk(disk), (long)(expected.Instructions * at));
            Assert.Multiple(() =>
            {
                Assert.That((saved.Snapshot.Disk!.Name, saved.Snapshot.Disk.Bytes, saved.Snapshot.Disk.Sha256?.Length), Is.EqualTo((Path.GetFileName(disk), 64 * 512L, 64)),
                    "the snapshot refers to the disk by its name, size and contents (checked on restore); it neither names the host file nor contains it");
                Assert.That(restored.Exit.Reason, Is.EqualTo(StopReason.GuestExit), restored.Exit.Diagnostic);
                Assert.That(saved.Output + restored.Output, Is.EqualTo(expected.Output));
                Assert.That(restored.Instructions, Is.EqualTo(expected.Instructions));
                Assert.That(File.ReadAllBytes(disk), Is.EqualTo(File.ReadAllBytes(expectedDisk)), "the disk ends the same");
            });
        }
        finally
        {
            File.Delete(expectedDisk);
            File.Delete(disk);
        }
    }

    [Test]
    public void RestoringADiskGuestWhoseImageIsGoneIsRefusedNamingTheImage()
    {
        string disk = BlankDisk();
        Saved saved;
        try
        {
            saved = Save(Enlblk(disk), 50_000);
        }
        finally
        {
            File.Delete(disk);
        }

        using var machine = new TestMachine();
        VirtualMachine? vm = machine.System.Root.RestoreVm(saved.Snapshot, out VmCreationError? error, diskImage: disk);
        Assert.That(vm, Is.Null);
        Assert.That(error!.Message, Does.Contain(disk).And.Contain("no such file"));
    }

    private static void CpuStateHasPending(VmSnapshot s, ref int count)
    {
        if ((s.Cpu.InterruptRequest0 | s.Cpu.InterruptRequest1 | s.Cpu.InterruptRequest2 | s.Cpu.InterruptRequest3) != 0 || s.Cpu.StiShadow)
        {
            count++;
        }
    }

    private static string BlankDisk()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-snapdisk-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(path, new byte[64 * 512]);
        return path;
    }

    internal sealed record Run(string Output, PartitionExit Exit, long Instructions);

    internal sealed record Saved(string Output, VmSnapshot Snapshot);

    internal static Run RunUninterrupted(VmConfiguration config)
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(config);
        machine.RunAsync().GetAwaiter().GetResult();
        return new Run(machine.Output(vm), vm.Exited.Result, vm.Statistics.InstructionsRetired);
    }

    /// <summary>Runs to <paramref name="saveAt"/>, saves to file bytes and reads them back, as `run --save-to` and `restore` do.</summary>
    internal static Saved Save(VmConfiguration config, long saveAt)
    {
        byte[] file;
        string output;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create(config);
            machine.System.Root.PauseAtInstruction(vm, saveAt);
            machine.RunAsync().GetAwaiter().GetResult();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused), $"the guest ended before instruction {saveAt}");
            output = machine.Output(vm);
            file = SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm));
        }

        VmSnapshot? snapshot = SnapshotFormat.TryDeserialize(file, out string error);
        Assert.That(snapshot, Is.Not.Null, error);
        return new Saved(output, snapshot!);
    }

    internal static (Saved Saved, Run Restored) SaveAndRestore(VmConfiguration config, long saveAt)
    {
        Saved saved = Save(config, saveAt);
        using var machine = new TestMachine();
        VirtualMachine? vm = machine.System.Root.RestoreVm(saved.Snapshot, out VmCreationError? error, diskImage: config.DiskImage);
        Assert.That(vm, Is.Not.Null, error?.Message);
        machine.RunAsync().GetAwaiter().GetResult();
        return (saved, new Run(machine.Output(vm!), vm!.Exited.Result, vm.Statistics.InstructionsRetired));
    }
}
