using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>`run --synthetic ... --save-at --save-to` and `restore` with enlightened guests, through the real CLI.</summary>
public class EnlightenedSnapshotCliTests
{
    [Test]
    public void ASyntheticConsoleGuestSavedMidOutputContinuesThroughTheCli()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        try
        {
            string[] run = { "run", Repository.GuestElf("enlcon"), "--append", "synth", "--synthetic", "synthcon" };
            CliProcess.Result whole = CliProcess.Run(run);
            CliProcess.Result saved = CliProcess.Run([.. run, "--save-at", "250000", "--save-to", path]);
            CliProcess.Result restored = CliProcess.Run("restore", path);
            Assert.Multiple(() =>
            {
                Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);
                Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);
                Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
                Assert.That(saved.Text, Is.Not.Empty.And.Length.LessThan(whole.Text.Length), "saved between two batches");
                Assert.That(saved.Text + restored.Text, Is.EqualTo(whole.Text));
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ASyntheticDiskGuestRestoredThroughTheCliWithItsDiskWritesWhatAnUninterruptedRunWrites()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        string wholeDisk = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.img");
        string disk = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(wholeDisk, new byte[64 * 512]);
        File.WriteAllBytes(disk, new byte[64 * 512]);
        try
        {
            string[] run = { "run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon" };
            CliProcess.Result whole = CliProcess.Run([.. run, "--disk", wholeDisk]);
            CliProcess.Result saved = CliProcess.Run([.. run, "--disk", disk, "--save-at", "150000", "--save-to", path]);
            CliProcess.Result restored = CliProcess.Run("restore", path, "--disk", disk);
            Assert.Multiple(() =>
            {
                Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);
                Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);
                Assert.That(saved.Stderr, Does.Contain("saved 'enlblk' at instruction 150000"));
                Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
                Assert.That(saved.Text + restored.Text, Is.EqualTo(whole.Text));
                Assert.That(File.ReadAllBytes(disk), Is.EqualTo(File.ReadAllBytes(wholeDisk)));
            });
        }
        finally
        {
            File.Delete(path);
            File.Delete(wholeDisk);
            File.Delete(disk);
        }
    }
}
