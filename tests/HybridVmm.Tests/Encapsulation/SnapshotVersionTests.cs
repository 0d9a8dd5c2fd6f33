using HybridVmm.HostOS.Encapsulation;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

public class SnapshotVersionTests
{
    /// <summary>A snapshot of `hello` at instruction 500 written by the build before format version 2 (no synthetic state).</summary>
    private static string VersionOneFile => Fixture("hello-v1.snap");

    /// <summary>`enlcon` with a synthetic console, saved mid-output at instruction 250000 by the last build that wrote format version 2 (Fixtures/README.md).</summary>
    private static string VersionTwoFile => Fixture("enlcon-v2.snap");

    private static string Fixture(string name) => Path.Combine(Repository.Root, "tests", "HybridVmm.Tests", "Encapsulation", "Fixtures", name);

    [Test]
    public void AVersionOneSnapshotIsRefusedWithTheVersionMessage()
    {
        Assert.That(SnapshotFormat.Version, Is.EqualTo(3));
        Assert.That(BitConverter.ToInt32(File.ReadAllBytes(VersionOneFile), 8), Is.EqualTo(1), "the fixture really is version 1");

        VmSnapshot? snapshot = SnapshotFile.TryRead(VersionOneFile, out string error);

        Assert.That(snapshot, Is.Null);
        Assert.That(error, Does.Contain("snapshot format version 1 is not supported (this build reads versions 2 and 3)"));
    }

    [Test]
    public void RestoringAVersionOneSnapshotThroughTheCliFailsWithStatus65AndTheVersion()
    {
        CliProcess.Result result = CliProcess.Run("restore", VersionOneFile);
        Assert.That(result.ExitCode, Is.EqualTo(HybridVmm.Cli.Common.ExitStatus.InvalidImage));
        Assert.That(result.Stderr, Does.StartWith("hybridvmm: error:").And.Contain("version 1 is not supported"));
    }

    [Test]
    public void AVersionTwoSnapshotIsReadByTheLegacyReaderWithEveryComponentsState()
    {
        VmSnapshot? snapshot = SnapshotFile.TryRead(VersionTwoFile, out string error);

        Assert.That(snapshot, Is.Not.Null, error);
        Assert.Multiple(() =>
        {
            Assert.That(snapshot!.Name, Is.EqualTo("enlcon"));
            Assert.That(snapshot.Cpu.InstructionsRetired, Is.EqualTo(250_000));
            Assert.That(snapshot.DeviceStates.Select(d => (d.Name, d.State.Tag, d.State.Version)),
                Is.EqualTo(new[] { ("com1", "device.com1", 1), ("debug-exit", "device.debug-exit", 1), ("provisioning", "device.provisioning", 1) }));
            Assert.That(snapshot.Channels.Select(c => (c.Device, c.Open, c.DeviceState?.Tag)), Is.EqualTo(new[] { ("synthcon", true, "vmbus.channel.1.synthcon") }));
            Assert.That(snapshot.Enlightened.Partition.Gpadls, Is.Not.Empty);
        });
    }

    [Test]
    public void AVersionTwoSnapshotSavedAgainIsAVersionThreeFileThatRestoresTheSameState()
    {
        VmSnapshot v2 = SnapshotFile.TryRead(VersionTwoFile, out _)!;
        byte[] v3 = SnapshotFormat.Serialize(v2);
        VmSnapshot again = SnapshotFormat.TryDeserialize(v3, out string error)!;

        Assert.That(BitConverter.ToInt32(v3, 8), Is.EqualTo(3));
        Assert.That(again, Is.Not.Null, error);
        Assert.That(SnapshotFormat.Serialize(again), Is.EqualTo(v3), "nothing is lost between the legacy reader and format 3");
    }

    [Test]
    public void AVersionTwoSnapshotRestoresThroughTheCliToTheOutputItHadWhenItWasWritten()
    {
        Assert.That(BitConverter.ToInt32(File.ReadAllBytes(VersionTwoFile), 8), Is.EqualTo(2), "the fixture really is version 2");

        CliProcess.Result restored = CliProcess.Run("restore", VersionTwoFile);

        Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
        Assert.That(restored.Stdout, Is.EqualTo(File.ReadAllBytes(Fixture("enlcon-v2.restored.txt"))));
    }

    [Test]
    public void AVersionTwoSnapshotContinuesTheGuestsOwnOutputExactly()
    {
        CliProcess.Result whole = CliProcess.Run("run", Repository.GuestElf("enlcon"), "--append", "synth", "--synthetic", "synthcon");
        byte[] restored = File.ReadAllBytes(Fixture("enlcon-v2.restored.txt"));

        Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);
        Assert.That(whole.Stdout.Length, Is.GreaterThan(restored.Length));
        Assert.That(whole.Stdout[^restored.Length..], Is.EqualTo(restored), "the fixture's output is the tail of a whole run");
    }
}
