using HybridVmm.Cli.Common;
using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.Tests.EndToEnd;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Issue 14, defect 4: a snapshot refers to its disk by identity and the host names the file (<c>restore --disk</c>).
/// A crafted snapshot that names a host file no longer makes restore write to it, and a disk that is not the one
/// the VM was saved with is refused.
/// </summary>
public class DiskIdentityTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-diskid-{Guid.NewGuid():N}"));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private string File64K(string name, byte fill)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, Enumerable.Repeat(fill, 64 * 512).ToArray());
        return path;
    }

    /// <summary>Saves enlblk at instruction 150,000 with <paramref name="disk"/>; returns the snapshot's path.</summary>
    private string SaveEnlblk(string disk)
    {
        string snapshot = Path.Combine(_dir, "vm.snap");
        CliProcess.Result saved = CliProcess.Run("run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon", "--disk", disk,
            "--save-at", "150000", "--save-to", snapshot);
        Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);
        return snapshot;
    }

    [Test]
    public void ACraftedSnapshotNamingAHostFileDoesNotMakeRestoreWriteThatFile()
    {
        string disk = File64K("disk.img", 0);
        string snapshot = SaveEnlblk(disk);
        byte[] atSave = File.ReadAllBytes(disk);
        string victim = File64K("victim", 0xA5);
        byte[] victimBefore = File.ReadAllBytes(victim);
        // The partition chunk as the format held it before: the disk's host path, here one the attacker chose.
        File.WriteAllBytes(snapshot, WithLegacyDiskPath(File.ReadAllBytes(snapshot), victim));

        CliProcess.Result withoutDisk = CliProcess.Run("restore", snapshot);
        byte[] victimAfterRestore = File.ReadAllBytes(victim);
        CliProcess.Result withDisk = CliProcess.Run("restore", snapshot, "--disk", disk);

        Assert.Multiple(() =>
        {
            InputBoundsTests.AssertRefused(withoutDisk, ExitStatus.Usage, "the saved VM has a synthblk disk (saved as 'victim'): name its file with --disk FILE");
            Assert.That(victimAfterRestore, Is.EqualTo(victimBefore), "restore without --disk must not touch the file the snapshot names");
            Assert.That(withDisk.ExitCode, Is.Zero, withDisk.Stderr);
            Assert.That(File.ReadAllBytes(victim), Is.EqualTo(victimBefore), "restore writes the host's disk, never the snapshot's path");
            Assert.That(File.ReadAllBytes(disk), Is.Not.EqualTo(atSave), "the guest did write its disk after the save point");
        });
    }

    [Test]
    public void RestoreRefusesADiskWhoseContentsAreNotThoseItWasSavedWith()
    {
        string disk = File64K("disk.img", 0);
        string snapshot = SaveEnlblk(disk);
        string other = File64K("other.img", 0x11);
        byte[] before = File.ReadAllBytes(other);
        string trace = Path.Combine(_dir, "old.trace");
        File.WriteAllText(trace, "an earlier run's trace\n");

        CliProcess.Result restored = CliProcess.Run("restore", snapshot, "--disk", other, "--trace", trace);

        InputBoundsTests.AssertRefused(restored, ExitStatus.InvalidImage, $"disk image '{other}' is not the disk the VM was saved with: its contents differ");
        Assert.That(File.ReadAllBytes(other), Is.EqualTo(before));
        Assert.That(File.ReadAllText(trace), Is.EqualTo("an earlier run's trace\n"), "refused before the trace file is opened");
    }

    [Test]
    public void RestoreRefusesADiskOfAnotherSize()
    {
        string disk = File64K("disk.img", 0);
        string snapshot = SaveEnlblk(disk);
        string other = Path.Combine(_dir, "small.img");
        File.WriteAllBytes(other, new byte[32 * 512]);

        InputBoundsTests.AssertRefused(CliProcess.Run("restore", snapshot, "--disk", other), ExitStatus.InvalidImage,
            "holds 16384 bytes, the saved disk 'disk.img' held 32768");
    }

    [Test]
    public void RestoreRefusesADeviceAsItsDisk()
    {
        string snapshot = SaveEnlblk(File64K("disk.img", 0));
        InputBoundsTests.AssertRefused(CliProcess.Run("restore", snapshot, "--disk", "/dev/zero"), ExitStatus.NoInput, "disk image '/dev/zero' is not a regular file");
    }

    [Test]
    public void RestoreRefusesADiskForASnapshotWithoutOne()
    {
        string snapshot = Path.Combine(_dir, "hello.snap");
        CliProcess.Result saved = CliProcess.Run("run", Repository.GuestElf("hello"), "--save-at", "500", "--save-to", snapshot);
        Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);
        InputBoundsTests.AssertRefused(CliProcess.Run("restore", snapshot, "--disk", File64K("disk.img", 0)), ExitStatus.Usage, "the saved VM has none");
    }

    [Test]
    public void CloneRefusesADeviceAsItsBaseDisk() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("clone", "--guest", "provdisk", "--disk", "/dev/zero", "--count", "1"),
            ExitStatus.NoInput, "disk image '/dev/zero' is not a regular file");

    /// <summary>
    /// The snapshot with its partition chunk rewritten as version 1, which held the disk's host path: what an older
    /// build wrote, and what a crafted snapshot would hold.
    /// </summary>
    internal static byte[] WithLegacyDiskPath(byte[] file, string path)
    {
        SavedStateContainerReader reader = SavedStateContainerReader.TryOpen(new MemoryStream(file), out string error)!;
        Assert.That(reader, Is.Not.Null, error);
        var chunks = reader.Chunks.Select(e => reader.TryReadChunk(e, int.MaxValue, out SavedStateChunk c, out _) ? c : null!).ToList();
        int at = chunks.FindIndex(c => c.Tag == VmSavedConfigurationCodec.Tag);
        Assert.That(VmSavedConfigurationCodec.Instance.TryDecode(chunks[at], out VmSavedConfiguration? config, out error), Is.True, error);
        using var payload = new MemoryStream();
        var w = new SavedStateWriter(payload);
        w.WriteString(config!.Name);
        w.WriteUInt32((uint)config.MemoryBytes); // version 2 held a u32
        w.WriteString(config.CommandLine);
        foreach (IReadOnlyList<string> names in new[] { config.Devices, config.SyntheticDevices })
        {
            w.WriteCount(names.Count);
            foreach (string name in names)
            {
                w.WriteString(name);
            }
        }

        w.WriteBoolean(true);
        w.WriteString(path);
        w.WriteInt64(config.InstructionLimit);
        chunks[at] = new SavedStateChunk(VmSavedConfigurationCodec.Tag, 1, payload.ToArray());
        return SavedStateContainer.ToBytes(chunks);
    }
}
