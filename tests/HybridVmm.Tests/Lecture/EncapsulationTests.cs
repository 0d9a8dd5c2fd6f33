using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Lecture;

/// <summary>Encapsulation: a running VM becomes one file, and comes back from it as if never interrupted.</summary>
public class EncapsulationTests
{
    private static readonly byte[] Cpu = Repository.ReadGuest("cpu");

    [TestCase(1)]
    [TestCase(1_000_000)]
    [TestCase(7_654_321)]
    [TestCase(23_959_000)]
    public async Task ACpuHeavyGuestSavedAndRestoredPrintsExactlyWhatAnUninterruptedRunPrints(long saveAt)
    {
        string expected = Repository.QemuOutput("cpu");

        string before;
        byte[] file;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create("cpu", Cpu);
            machine.System.Root.PauseAtInstruction(vm, saveAt);
            await machine.RunAsync();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(saveAt));
            before = machine.Output(vm);
            file = SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm));
        }

        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(snapshot, Is.Not.Null, error);
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(snapshot, out VmCreationError? creationError)!;
            Assert.That(vm, Is.Not.Null, creationError?.Message);
            await machine.RunAsync();
            PartitionExit exit = await vm.Exited;
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(before + machine.Output(vm), Is.EqualTo(expected));
            // A bare core counts 23,959,616 up to the OUT that ends the guest (CpuGuestBenchmark); that OUT retires before the partition stops.
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(23_959_616 + 1), "the same instruction count as one uninterrupted run");
        }
    }

    [Test]
    public void ACorruptSnapshotIsRefusedNamingTheChecksum()
    {
        byte[] file = Snapshots.SavedHello();
        file[^100] ^= 0x40;
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Does.Contain("checksum"));
    }

    [Test]
    public void ATruncatedSnapshotIsRefused()
    {
        byte[] file = Snapshots.SavedHello();
        Assert.That(SnapshotFormat.TryDeserialize(file.AsSpan(0, file.Length - 1), out string error), Is.Null);
        Assert.That(error, Does.Contain("truncated"));
        Assert.That(SnapshotFormat.TryDeserialize(file.AsSpan(0, 20), out error), Is.Null);
        Assert.That(error, Does.Contain("truncated"));
    }

    [Test]
    public void ASnapshotOfAnotherFormatVersionIsRefused()
    {
        byte[] file = Snapshots.SavedHello();
        BitConverter.GetBytes(SnapshotFormat.Version + 1).CopyTo(file, 8);
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Does.Contain($"version {SnapshotFormat.Version + 1}"));
    }

    [Test]
    public void AFileThatIsNotASnapshotIsRefused()
    {
        Assert.That(SnapshotFormat.TryDeserialize(Repository.ReadGuest("hello"), out string error), Is.Null);
        Assert.That(error, Does.Contain("not a HybridVmm snapshot"));
    }

    [Test]
    public void SavingReplacesTheFileAtomicallyByRenameNeverInPlace()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        try
        {
            VmSnapshot first = SnapshotFormat.TryDeserialize(Snapshots.SavedHello(), out _)!;
            SnapshotFile.Write(path, first);
            byte[] original = File.ReadAllBytes(path);
            using var reader = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            SnapshotFile.Write(path, first with { CommandLine = "a different snapshot" });

            // An in-place rewrite would show the new bytes through the handle opened before the save.
            byte[] throughOldHandle = new byte[original.Length + 64];
            int read = reader.Read(throughOldHandle);
            Assert.That(throughOldHandle.AsSpan(0, read).ToArray(), Is.EqualTo(original));
            Assert.That(SnapshotFile.TryRead(path, out string error)!.CommandLine, Is.EqualTo("a different snapshot"), error);
            Assert.That(Directory.GetFiles(Path.GetTempPath(), $".{Path.GetFileName(path)}*"), Is.Empty, "no temporary file is left behind");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void SaveAndRestoreThroughTheCliContinueTheOutput()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        try
        {
            CliProcess.Result saved = CliProcess.Run("run", Repository.GuestElf("cpu"), "--save-at", "3000000", "--save-to", path);
            Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);
            Assert.That(saved.Stderr, Does.Contain("saved 'cpu' at instruction 3000000"));
            CliProcess.Result restored = CliProcess.Run("restore", path);
            Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
            Assert.That(saved.Text + restored.Text, Is.EqualTo(Repository.QemuOutput("cpu")));

            File.WriteAllBytes(path, File.ReadAllBytes(path)[..100]);
            CliProcess.Result corrupt = CliProcess.Run("restore", path);
            Assert.That(corrupt.ExitCode, Is.EqualTo(HybridVmm.Cli.Common.ExitStatus.InvalidImage));
            Assert.That(corrupt.Stderr, Does.StartWith("hybridvmm: error:").And.Contain("truncated"));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
