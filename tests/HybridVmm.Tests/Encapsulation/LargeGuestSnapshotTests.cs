using HybridVmm.Tests.EndToEnd;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// A guest of 4 GiB (a size a u32 cannot hold, with pages numbered from 2^20 on above 4 GiB) saves and restores through
/// the real CLI: the <see cref="RamAbove4GiBTests"/> guest writes its patterns above 4 GiB, counts down while
/// <c>run --save-at</c> takes the snapshot, then reads them back and prints them. The restored guest prints what QEMU
/// prints for the same guest (<c>-m 4G -cpu qemu32,+pse36</c>), so the pages above 4 GiB came back from the file; the
/// file holds only the non-zero pages, and neither the save nor the restore holds a copy of the guest's RAM.
/// </summary>
[NonParallelizable]
public sealed class LargeGuestSnapshotTests
{
    /// <summary>What a save or a restore may add to the peak RSS of a run (as <see cref="StreamingSnapshotTests"/>).</summary>
    private const long ExtraBytesAllowed = 64L << 20;

    [Test]
    public void AGuestOf4GiBWithDataAbove4GiBSavesAndRestoresAsQemuRunsIt()
    {
        if (HostRss.Unavailable is { } why)
        {
            Assert.Ignore(why);
        }

        string directory = Directory.CreateTempSubdirectory("hvlarge").FullName;
        try
        {
            string image = Path.Combine(directory, "high.elf"), snapshot = Path.Combine(directory, "high.snap");
            File.WriteAllBytes(image, RamAbove4GiBTests.Guest(countdown: 2_000_000));
            string qemu = QemuReference.RunLinux(image, "", "4G", cpu: "qemu32,+pse36");
            (CliProcess.Result plain, long plainRss) = HostRss.Run("run", image, "--memory", "4G");
            (CliProcess.Result saved, long saveRss) = HostRss.Run("run", image, "--memory", "4G", "--save-at", "1000000", "--save-to", snapshot);
            (CliProcess.Result restored, long restoreRss) = HostRss.Run("restore", snapshot);
            string expected = qemu.Replace(RamAbove4GiBTests.QemuRsvd, RamAbove4GiBTests.SdmRsvd);
            TestContext.Out.WriteLine($"QEMU: {qemu}\nrestored: {restored.Text}\nsnapshot {new FileInfo(snapshot).Length} bytes; " +
                $"peak RSS: run {plainRss >> 20} MiB, run and save {saveRss >> 20} MiB, restore {restoreRss >> 20} MiB");
            Assert.Multiple(() =>
            {
                Assert.That(qemu, Does.StartWith("CAFEBABE 12345678 A5A55A5A 0BADF00D "), "QEMU read back what the guest wrote above 4 GiB");
                Assert.That(plain.ExitCode, Is.Zero, plain.Stderr);
                Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);
                Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
                Assert.That(plain.Text, Is.EqualTo(expected), "the run without a save");
                Assert.That(restored.Text, Is.EqualTo(expected), "the restored guest read its pages above 4 GiB back from the snapshot");
                Assert.That(new FileInfo(snapshot).Length, Is.LessThan(1L << 20), "a snapshot of 4 GiB holds only its few non-zero pages");
                Assert.That(saveRss - plainRss, Is.LessThan(ExtraBytesAllowed), "saving costs more than a run by this much");
                Assert.That(restoreRss - plainRss, Is.LessThan(ExtraBytesAllowed), "restoring costs more than a run by this much");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
