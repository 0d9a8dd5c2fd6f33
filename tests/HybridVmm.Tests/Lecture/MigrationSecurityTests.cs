using HybridVmm.Cli.Common;
using HybridVmm.Tests.EndToEnd;
using HybridVmm.Tests.Support;
using static HybridVmm.Tests.Lecture.LiveMigrationTests;

namespace HybridVmm.Tests.Lecture;

/// <summary>
/// Issue 14, defect 4, between two processes: a migration is authenticated both ways with a shared token before any
/// guest state moves, and the target host names the migrated VM's disk, which must be the one the source ran on.
/// A failed authentication leaves the guest running on its source.
/// </summary>
public class MigrationSecurityTests
{
    private static string Expected => File.ReadAllText(Path.ChangeExtension(Repository.GuestElf("cpu"), ".qemu.txt"));

    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-migsec-{Guid.NewGuid():N}"));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private string Token(string name, string token)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, token + "\n");
        return path;
    }

    private static string[] CpuSource(params string[] extra) => ["run", Repository.GuestElf("cpu"), "--migrate-at", "9000000", .. extra];

    [Test]
    public void AReceiverWithNeitherATokenNorInsecureRefusesToStart() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("receive", "--listen", "127.0.0.1:0"), ExitStatus.Usage, "receive needs --token-file FILE");

    [Test]
    public void AReceiverRefusesATokenFileThatHoldsNoToken() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("receive", "--token-file", Token("short", "tooshort")), ExitStatus.Configuration,
            "must hold one token of at least 16 characters");

    [Test]
    public void AReceiverRefusesADeviceAsItsTokenFile() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("receive", "--token-file", "/dev/zero"), ExitStatus.NoInput, "token file '/dev/zero' is not a regular file");

    [Test]
    public void TheVmClientRefusesADeviceAsItsTokenFileLikeServeAndReceive() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("vm", "host", "--connect", "127.0.0.1:1", "--token-file", "/dev/zero"), ExitStatus.NoInput,
            "token file '/dev/zero' is not a regular file");

    [Test]
    public void AWrongTokenIsRefusedOnBothSidesAndTheGuestRunsOnOnTheSource()
    {
        (CliProcess.Result source, int targetStatus, string targetOut, string targetErr) = MigrateBetweenProcesses(
            ["--token-file", Token("target", "the-target-token-0123")], CpuSource("--token-file", Token("source", "the-source-token-4567")));
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.EqualTo(ExitStatus.PermissionDenied), source.Stderr);
            Assert.That(source.Stderr, Does.Contain("hybridvmm: error: migration refused: the target refused: authentication failed: the migration tokens differ"));
            Assert.That(source.Stderr, Does.Not.Contain("   at "));
            Assert.That(source.Text, Is.EqualTo(Expected), "the guest ran to its end on the source");
            Assert.That(targetStatus, Is.EqualTo(ExitStatus.PermissionDenied), targetErr);
            Assert.That(targetErr, Does.Contain("hybridvmm: error: migration refused: the source's migration token is not the one in --token-file"));
            Assert.That(targetOut, Is.Empty, "no guest ran on the target");
        });
    }

    [Test]
    public void ASourceWithoutATokenIsRefusedByAReceiverThatHasOne()
    {
        (CliProcess.Result source, int targetStatus, _, string targetErr) = MigrateBetweenProcesses(
            ["--token-file", Token("target", "the-target-token-0123")], CpuSource());
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.EqualTo(ExitStatus.PermissionDenied), source.Stderr);
            Assert.That(source.Stderr, Does.Contain("the target requires a migration token: give --token-file"));
            Assert.That(source.Text, Is.EqualTo(Expected));
            Assert.That(targetStatus, Is.EqualTo(ExitStatus.PermissionDenied), targetErr);
            Assert.That(targetErr, Does.Contain("the source has no migration token"));
        });
    }

    [Test]
    public void ASourceWithATokenDoesNotSendItsGuestToAnInsecureReceiver()
    {
        (CliProcess.Result source, int targetStatus, string targetOut, string targetErr) = MigrateBetweenProcesses(
            ["--insecure"], CpuSource("--token-file", Token("source", "the-source-token-4567")));
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.EqualTo(ExitStatus.PermissionDenied), source.Stderr);
            Assert.That(source.Stderr, Does.Contain("the target does not authenticate (receive --insecure)"));
            Assert.That(source.Text, Is.EqualTo(Expected));
            Assert.That(targetStatus, Is.EqualTo(ExitStatus.PermissionDenied), targetErr);
            Assert.That(targetOut, Is.Empty);
        });
    }

    [Test]
    public void AnInsecureReceiverTakesAGuestFromASourceWithoutAToken()
    {
        (CliProcess.Result source, int targetStatus, string targetOut, string targetErr) = MigrateBetweenProcesses(["--insecure"], CpuSource());
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(targetStatus, Is.Zero, targetErr);
            Assert.That(source.Text + targetOut, Is.EqualTo(Expected));
        });
    }

    [Test]
    public void ADiskGuestMigratesToAReceiverThatNamesTheSameDisk()
    {
        string wholeDisk = Path.Combine(_dir, "whole.img"), disk = Path.Combine(_dir, "disk.img");
        File.WriteAllBytes(wholeDisk, new byte[64 * 512]);
        File.WriteAllBytes(disk, new byte[64 * 512]);
        string token = Token("token", "a-shared-migration-token");
        string[] enlblk = ["run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon"];
        CliProcess.Result whole = CliProcess.Run([.. enlblk, "--disk", wholeDisk]);

        (CliProcess.Result source, int targetStatus, string targetOut, string targetErr) = MigrateBetweenProcesses(
            ["--token-file", token, "--disk", disk], [.. enlblk, "--disk", disk, "--migrate-at", "150000", "--token-file", token]);

        Assert.Multiple(() =>
        {
            Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(targetStatus, Is.Zero, targetErr);
            Assert.That(source.Text + targetOut, Is.EqualTo(whole.Text));
            Assert.That(File.ReadAllBytes(disk), Is.EqualTo(File.ReadAllBytes(wholeDisk)));
        });
    }

    [Test]
    public void AReceiverThatNamesAnotherDiskRefusesTheGuestWhichRunsOnOnTheSource()
    {
        string wholeDisk = Path.Combine(_dir, "whole.img"), disk = Path.Combine(_dir, "disk.img"), other = Path.Combine(_dir, "other.img");
        File.WriteAllBytes(wholeDisk, new byte[64 * 512]);
        File.WriteAllBytes(disk, new byte[64 * 512]);
        File.WriteAllBytes(other, Enumerable.Repeat((byte)0x11, 64 * 512).ToArray());
        string token = Token("token", "a-shared-migration-token");
        string[] enlblk = ["run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon"];
        CliProcess.Result whole = CliProcess.Run([.. enlblk, "--disk", wholeDisk]);

        (CliProcess.Result source, int targetStatus, _, string targetErr) = MigrateBetweenProcesses(
            ["--token-file", token, "--disk", other], [.. enlblk, "--disk", disk, "--migrate-at", "150000", "--token-file", token]);

        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(source.Stderr, Does.Contain("migration failed").And.Contain("is not the disk the VM was saved with"));
            Assert.That(source.Text, Is.EqualTo(whole.Text), "the guest ran to its end on the source");
            Assert.That(File.ReadAllBytes(disk), Is.EqualTo(File.ReadAllBytes(wholeDisk)));
            Assert.That(File.ReadAllBytes(other), Is.EqualTo(Enumerable.Repeat((byte)0x11, 64 * 512).ToArray()), "the target never wrote the other disk");
            Assert.That(targetStatus, Is.EqualTo(ExitStatus.InvalidImage), targetErr);
            Assert.That(targetErr, Does.Contain("is not the disk the VM was saved with"));
        });
    }
}
