using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Encapsulation;
using HybridVmm.Tests.Support;
using static HybridVmm.Tests.Lecture.LiveMigrationTests;

namespace HybridVmm.Tests.Lecture;

/// <summary>
/// Issue 14, defect 7 (and the rest of defect 6): migration deadlines. A stalled target does not hold the paused source guest forever: past
/// <c>--migrate-timeout</c> the source gives up and the guest runs on there. A silent or stray first connection
/// neither blocks nor ends <c>receive</c>: it is dropped after <c>--handshake-timeout</c>, and the real source is
/// taken. A target whose source gave up discards its copy, so the guest never runs twice. (The timeouts are set
/// small; nothing here measures time.)
/// </summary>
public class MigrationDeadlineTests
{
    private static string Expected => Repository.QemuOutput("cpu");

    // The deadline bounds how long the target takes no data; 3 s leaves room for a loaded CI machine.
    private static CliProcess.Result MigrateCpuTo(int port) =>
        CliProcess.Run("run", Repository.GuestElf("cpu"), "--migrate-at", "9000000", "--migrate-to", $"127.0.0.1:{port}", "--migrate-timeout", "3");

    [Test]
    public async Task ASilentTargetDoesNotHoldThePausedGuest()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        Task<TcpClient> accepted = listener.AcceptTcpClientAsync();

        CliProcess.Result source = MigrateCpuTo(((IPEndPoint)listener.LocalEndpoint).Port);

        (await accepted).Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(source.Stderr, Does.Contain("migration failed: the migration handshake with 127.0.0.1:").And.Contain("the target did not answer within 3 s"));
            Assert.That(source.Text, Is.EqualTo(Expected), "the guest resumed and ran to its end on the source");
        });
    }

    [Test]
    public async Task ATargetThatTakesTheFinalStateAndNeverAnswersDoesNotHoldThePausedGuest()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        Task<bool> stalledTarget = Task.Run(async () =>
        {
            using TcpClient client = await listener.AcceptTcpClientAsync();
            NetworkStream stream = client.GetStream();
            HandshakeResult handshake = await MigrationHandshake.AcceptAsync(stream, null, TimeSpan.FromMinutes(1), CancellationToken.None);
            Assert.That(handshake.Outcome, Is.EqualTo(HandshakeOutcome.Authenticated), handshake.Reason);
            while ((await MigrationProtocol.ReadFrameAsync(stream, CancellationToken.None)).Type != MigrationProtocol.FrameType.Final)
            {
            }

            // Stop-and-copy: the source's guest is paused now, waiting for Resumed, which never comes.
            try
            {
                await MigrationProtocol.ReadFrameAsync(stream, CancellationToken.None);
                return false;
            }
            catch (Exception e) when (e is IOException or EndOfStreamException)
            {
                return true; // the source gave up and closed the connection
            }
        });

        CliProcess.Result source = MigrateCpuTo(((IPEndPoint)listener.LocalEndpoint).Port);

        Assert.Multiple(async () =>
        {
            Assert.That(await stalledTarget.WaitAsync(TimeSpan.FromMinutes(1)), Is.True, "the source sent its final state, then closed without a commit");
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(source.Stderr, Does.Contain("migration failed: the target did not answer within 3 s (--migrate-timeout); the VM keeps running here"));
            Assert.That(source.Text, Is.EqualTo(Expected), "the guest resumed and ran to its end on the source");
        });
    }

    [Test]
    public void SilentAndStrayConnectionsAreDroppedAndTheReceiverTakesTheRealSource()
    {
        string token = TokenFile("a-shared-migration-token");
        try
        {
            using Process receiver = StartReceiver(out int port, "--token-file", token, "--handshake-timeout", "1");
            Task<string> targetOut = receiver.StandardOutput.ReadToEndAsync();
            Task<string> targetErr = receiver.StandardError.ReadToEndAsync();
            using var silent = new TcpClient();
            silent.Connect(IPAddress.Loopback, port);
            using (var stray = new TcpClient())
            {
                stray.Connect(IPAddress.Loopback, port);
                stray.GetStream().Write("GET / HTTP/1.0\r\n\r\n"u8);
            }

            CliProcess.Result source = CliProcess.Run("run", Repository.GuestElf("cpu"), "--migrate-at", "9000000", "--migrate-to", $"127.0.0.1:{port}",
                "--token-file", token);
            bool ended = receiver.WaitForExit(TimeSpan.FromMinutes(2));
            if (!ended)
            {
                receiver.Kill();
            }

            Assert.Multiple(() =>
            {
                Assert.That(ended, Is.True, "the receiver ends");
                Assert.That(source.ExitCode, Is.Zero, source.Stderr);
                Assert.That(receiver.ExitCode, Is.Zero, targetErr.Result);
                Assert.That(targetErr.Result, Does.Contain("no migration handshake within 1 s; still listening"), "the silent one");
                Assert.That(targetErr.Result.Split('\n').Count(line => line.StartsWith("hybridvmm: dropped a connection from 127.0.0.1:")), Is.EqualTo(2),
                    "the silent one and the stray one (dropped as malformed, or as closed if it went before the challenge)");
                Assert.That(source.Text + targetOut.Result, Is.EqualTo(Expected));
            });
        }
        finally
        {
            File.Delete(token);
        }
    }

    [Test]
    public async Task ATargetWhoseSourceNeverCommitsDiscardsTheVmItRestored()
    {
        byte[] final = Snapshots.SavedHello();
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(final, out _)!;
        byte[] hello = MigrationProtocol.Hello(new VmConfiguration { Name = snapshot.Name, Image = [], MemoryBytes = snapshot.MemoryBytes });

        (_, string? error, Exception? thrown) = await CraftedInputTests.ReceiveCrafted(
            [.. CraftedInputTests.Frame(MigrationProtocol.FrameType.Hello, hello), .. CraftedInputTests.Frame(MigrationProtocol.FrameType.Final, final)]);

        Assert.That(thrown, Is.Null);
        Assert.That(error, Does.Contain("the source went away before it committed the hand-over").And.Contain("its copy here was discarded"));
    }

    /// <summary>Issue 14, defect 6: pre-copy pages for a guest that cannot fit the target are refused before any is held.</summary>
    [Test]
    public async Task AGuestLargerThanTheTargetsFreeMemoryIsRefusedBeforeItsPagesAreHeld()
    {
        byte[] hello = MigrationProtocol.Hello(new VmConfiguration { Name = "big", Image = [], MemoryBytes = 64u << 20 });
        byte[] pages = new byte[4 + 4 + 4096];
        pages[0] = 1;

        (_, string? error, Exception? thrown) = await CraftedInputTests.ReceiveCrafted(
            [.. CraftedInputTests.Frame(MigrationProtocol.FrameType.Hello, hello), .. CraftedInputTests.Frame(MigrationProtocol.FrameType.Pages, pages)]);

        Assert.That(thrown, Is.Null);
        Assert.That(error, Does.StartWith("the guest's 64 MiB of memory do not fit in the 16 MiB this host has free"));
    }
}
