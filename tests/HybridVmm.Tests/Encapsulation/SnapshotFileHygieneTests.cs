using System.Diagnostics;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Issue 14, defects 13 and 14: a killed save's temporary file is removed by the next save of the same file, and a
/// snapshot's disk is found again when it is restored from another directory (since defect 4, the host names the
/// disk and the snapshot keeps no path at all, so the directory no longer matters).
/// </summary>
public class SnapshotFileHygieneTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-hygiene-{Guid.NewGuid():N}"));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void TheNextSaveRemovesTheTemporaryFilesOfSavesWhoseProcessIsGone()
    {
        string target = Path.Combine(_dir, "vm.snap");
        int gone;
        using (Process exited = Process.Start("true")!)
        {
            exited.WaitForExit();
            gone = exited.Id;
        }

        string stale = SnapshotFile.TemporaryName(target, gone);
        string running = SnapshotFile.TemporaryName(target, 1); // init always runs: perhaps a save under way, kept
        string other = Path.Combine(_dir, ".vm.snap.notapid.tmp");
        string otherFile = SnapshotFile.TemporaryName(Path.Combine(_dir, "other.snap"), gone);
        foreach (string path in new[] { stale, running, other, otherFile })
        {
            File.WriteAllText(path, "left over");
        }

        SnapshotFile.Write(target, SavedHello());

        Assert.Multiple(() =>
        {
            Assert.That(File.Exists(stale), Is.False, "the killed save's leftover is removed");
            Assert.That(File.Exists(running), Is.True);
            Assert.That(File.Exists(other), Is.True);
            Assert.That(File.Exists(otherFile), Is.True, "only this file's temporaries");
            Assert.That(SnapshotFile.TryRead(target, out string error), Is.Not.Null, error);
            Assert.That(Directory.GetFiles(_dir, ".vm.snap.*.tmp").Select(Path.GetFileName), Is.EquivalentTo(new[] { Path.GetFileName(running), Path.GetFileName(other) }));
        });
    }

    [Test]
    public void ASnapshotKeepsNoDiskPathSoRestoreWorksFromAnotherDirectory()
    {
        (string saveDir, string elsewhere) = (Path.Combine(_dir, "a"), Path.Combine(_dir, "b"));
        Directory.CreateDirectory(saveDir);
        Directory.CreateDirectory(elsewhere);
        File.WriteAllBytes(Path.Combine(saveDir, "whole.img"), new byte[64 * 512]);
        File.WriteAllBytes(Path.Combine(saveDir, "disk.img"), new byte[64 * 512]);
        string[] run = { "run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon" };

        CliProcess.Result whole = CliProcess.RunIn(saveDir, [.. run, "--disk", "whole.img"]);
        CliProcess.Result saved = CliProcess.RunIn(saveDir, [.. run, "--disk", "disk.img", "--save-at", "150000", "--save-to", "vm.snap"]);
        VmSnapshot snapshot = SnapshotFile.TryRead(Path.Combine(saveDir, "vm.snap"), out _)!;
        CliProcess.Result restored = CliProcess.RunIn(elsewhere, "restore", Path.Combine(saveDir, "vm.snap"), "--disk", Path.Combine("..", "a", "disk.img"));

        Assert.Multiple(() =>
        {
            Assert.That(snapshot.Disk!.Name, Is.EqualTo("disk.img"), "a name for messages, not a path");
            Assert.That((whole.ExitCode, saved.ExitCode, restored.ExitCode), Is.EqualTo((0, 0, 0)), saved.Stderr + restored.Stderr);
            Assert.That(saved.Text + restored.Text, Is.EqualTo(whole.Text));
            Assert.That(File.ReadAllBytes(Path.Combine(saveDir, "disk.img")), Is.EqualTo(File.ReadAllBytes(Path.Combine(saveDir, "whole.img"))));
        });
    }

    [Test]
    public void AnOlderSnapshotWhichNamedItsDiskByPathRestoresWithTheHostsDisk()
    {
        (string saveDir, string elsewhere) = (Path.Combine(_dir, "a"), Path.Combine(_dir, "b"));
        Directory.CreateDirectory(saveDir);
        Directory.CreateDirectory(elsewhere);
        File.WriteAllBytes(Path.Combine(saveDir, "disk.img"), new byte[64 * 512]);
        CliProcess.Result saved = CliProcess.RunIn(saveDir, "run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon", "--disk", "disk.img",
            "--save-at", "150000", "--save-to", "vm.snap");
        string path = Path.Combine(saveDir, "vm.snap");
        // As an earlier build wrote it: a version-1 partition chunk with the path as typed.
        File.WriteAllBytes(path, DiskIdentityTests.WithLegacyDiskPath(File.ReadAllBytes(path), "disk.img"));

        CliProcess.Result restored = CliProcess.RunIn(elsewhere, "restore", path, "--disk", Path.Combine(saveDir, "disk.img"));

        Assert.That((saved.ExitCode, restored.ExitCode), Is.EqualTo((0, 0)), saved.Stderr + restored.Stderr);
    }

    private static VmSnapshot SavedHello()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("hello", Repository.ReadGuest("hello"));
        machine.System.Root.PauseAtInstruction(vm, 500);
        machine.RunAsync().GetAwaiter().GetResult();
        return machine.System.Root.CaptureSnapshot(vm);
    }
}
