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
    private static string Expected => Repository.QemuOutput("cpu");

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

    [Test]
    public async Task TheTokenNeverCrossesTheWireAndNoTwoHandshakesAreAlike()
    {
        byte[] key = HybridVmm.HostOS.Migration.MigrationHandshake.Key("the-shared-token-0123456789");
        byte[] first = await RecordedHandshake(key), second = await RecordedHandshake(key);
        Assert.Multiple(() =>
        {
            Assert.That(first.AsSpan().IndexOf(key), Is.EqualTo(-1), "the token is not on the wire");
            Assert.That(first.AsSpan().IndexOf(key.AsSpan(0, 8)), Is.EqualTo(-1), "nor a piece of it");
            Assert.That(first.Length, Is.EqualTo(second.Length));
            Assert.That(first, Is.Not.EqualTo(second), "fresh nonces: a recorded handshake cannot be replayed");
        });
    }

    [Test]
    public async Task APeersReasonIsPrintedOnOneLineWithoutItsControlCharacters()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(System.Net.IPAddress.Loopback, ((System.Net.IPEndPoint)listener.LocalEndpoint).Port);
        using System.Net.Sockets.TcpClient accepted = await listener.AcceptTcpClientAsync();
        await HybridVmm.HostOS.Migration.MigrationProtocol.WriteFrameAsync(client.GetStream(), HybridVmm.HostOS.Migration.MigrationProtocol.FrameType.Failed,
            "no\nhybridvmm: forged line\u001b]2;pwned\u0007"u8.ToArray(), CancellationToken.None);

        var result = await HybridVmm.HostOS.Migration.MigrationHandshake.AcceptAsync(accepted.GetStream(), null, TimeSpan.FromMinutes(1), CancellationToken.None);

        Assert.That(result.Reason, Is.EqualTo("the source refused to authenticate: no?hybridvmm: forged line?]2;pwned?"));
    }

    /// <summary>Both directions of one authenticated handshake over loopback, as the bytes that crossed the wire.</summary>
    private static async Task<byte[]> RecordedHandshake(byte[] key)
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var wire = new MemoryStream();
        Task<HybridVmm.HostOS.Migration.HandshakeResult> target = Task.Run(async () =>
        {
            using System.Net.Sockets.TcpClient accepted = await listener.AcceptTcpClientAsync();
            return await HybridVmm.HostOS.Migration.MigrationHandshake.AcceptAsync(new Recording(accepted.GetStream(), wire), key, TimeSpan.FromMinutes(1), CancellationToken.None);
        });
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(System.Net.IPAddress.Loopback, ((System.Net.IPEndPoint)listener.LocalEndpoint).Port);
        var source = await HybridVmm.HostOS.Migration.MigrationHandshake.ConnectAsync(new Recording(client.GetStream(), wire), key, CancellationToken.None);
        Assert.That((source.Outcome, (await target).Outcome), Is.EqualTo((HybridVmm.HostOS.Migration.HandshakeOutcome.Authenticated, HybridVmm.HostOS.Migration.HandshakeOutcome.Authenticated)));
        lock (wire)
        {
            return wire.ToArray();
        }
    }

    /// <summary>A stream that also appends every byte written to it to <paramref name="wire"/>.</summary>
    private sealed class Recording(Stream inner, MemoryStream wire) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            lock (wire)
            {
                wire.Write(buffer.Span);
            }

            return inner.WriteAsync(buffer, cancellationToken);
        }
    }
}
