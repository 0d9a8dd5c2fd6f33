using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Issue 14, defect 1: guest memory passes between the VM and the snapshot file without a copy. The file is the
/// same, byte for byte, as one written from copied pages, and a file that changes after it was verified is refused
/// by the restore, which leaves no VM behind.
/// </summary>
public class SnapshotFileMemoryTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("hybridvmm-filememory").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void ASaveStraightFromThePausedVmWritesTheSameBytesAsOneFromCopiedPages()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("hello", Repository.ReadGuest("hello"));
        machine.System.Root.PauseAtInstruction(vm, 500);
        machine.RunAsync().GetAwaiter().GetResult();
        string path = Path.Combine(_dir, "hello.snap");

        SnapshotFile.Write(path, machine.System.Root.CaptureSnapshot(vm, copyMemory: false));

        Assert.That(File.ReadAllBytes(path), Is.EqualTo(SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm))));
    }

    [Test]
    public void ARestoredGuestCanBeSavedOverTheFileItWasRestoredFrom()
    {
        string path = Path.Combine(_dir, "cpu.snap");
        CliProcess.Result first = CliProcess.Run("run", Repository.GuestElf("cpu"), "--save-at", "4000000", "--save-to", path);
        CliProcess.Result second = CliProcess.Run("restore", path, "--save-at", "8000000", "--save-to", path);
        CliProcess.Result last = CliProcess.Run("restore", path);

        Assert.Multiple(() =>
        {
            Assert.That((first.ExitCode, second.ExitCode, last.ExitCode), Is.EqualTo((0, 0, 0)), first.Stderr + second.Stderr + last.Stderr);
            Assert.That(first.Text + second.Text + last.Text, Is.EqualTo(Repository.QemuOutput("cpu")));
        });
    }

    [Test]
    public void AFileWhosePagesChangeAfterItWasVerifiedIsRefusedAndLeavesNoVm()
    {
        string path = Path.Combine(_dir, "hello.snap");
        File.WriteAllBytes(path, Snapshots.SavedHello());
        long firstPageNumber;
        using (FileStream file = File.OpenRead(path))
        {
            SavedStateChunkEntry memory = SavedStateContainerReader.TryOpen(file, out string openError)!.Find(GuestMemoryCodec.Tag)
                ?? throw new AssertionException(openError);
            firstPageNumber = memory.Offset + 4;
        }

        VmSnapshot snapshot = SnapshotFile.TryRead(path, out string error) ?? throw new AssertionException(error);
        using SavedMemory pages = snapshot.Memory;
        Assert.That(pages, Is.InstanceOf<SnapshotFileMemory>(), "the pages stay in the file until the restore");

        // Someone rewrites the first page's number in place, after the checks: the restore must still not write outside the VM.
        using (FileStream writer = new(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            writer.Position = firstPageNumber;
            writer.Write(BitConverter.GetBytes(0xFFFF_FFF0u));
        }

        using var machine = new TestMachine();
        VirtualMachine? restored = machine.System.Root.RestoreVm(snapshot, out VmCreationError? refused);

        Assert.Multiple(() =>
        {
            Assert.That(restored, Is.Null);
            Assert.That(refused?.Message, Does.Contain("snapshot file changed while it was restored: page 4294967280 lies outside the VM"));
            Assert.That(machine.System.Root.VirtualMachines, Is.Empty);
        });
    }
}
