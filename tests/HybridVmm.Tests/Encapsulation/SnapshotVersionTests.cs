using HybridVmm.HostOS.Encapsulation;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

public class SnapshotVersionTests
{
    /// <summary>A snapshot of `hello` at instruction 500 written by the build before format version 2 (no synthetic state).</summary>
    private static string VersionOneFile => Path.Combine(Repository.Root, "tests", "HybridVmm.Tests", "Encapsulation", "Fixtures", "hello-v1.snap");

    [Test]
    public void AVersionOneSnapshotIsRefusedWithTheVersionMessage()
    {
        Assert.That(SnapshotFormat.Version, Is.EqualTo(2));
        Assert.That(BitConverter.ToInt32(File.ReadAllBytes(VersionOneFile), 8), Is.EqualTo(1), "the fixture really is version 1");

        VmSnapshot? snapshot = SnapshotFile.TryRead(VersionOneFile, out string error);

        Assert.That(snapshot, Is.Null);
        Assert.That(error, Does.Contain("snapshot format version 1 is not supported (this build reads version 2)"));
    }

    [Test]
    public void RestoringAVersionOneSnapshotThroughTheCliFailsWithStatus65AndTheVersion()
    {
        CliProcess.Result result = CliProcess.Run("restore", VersionOneFile);
        Assert.That(result.ExitCode, Is.EqualTo(HybridVmm.Cli.ExitStatus.InvalidImage));
        Assert.That(result.Stderr, Does.StartWith("hybridvmm: error:").And.Contain("version 1 is not supported"));
    }
}
