using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using HybridVmm.Cli.Common;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Encapsulation;
using HybridVmm.Tests.Support;
using static HybridVmm.HostOS.Migration.MigrationProtocol;

namespace HybridVmm.Tests.Lecture;

/// <summary>
/// Issue 14, defect 7, the receiver's side: a source that stalls after the handshake, between two frames or in the
/// middle of one, does not hold <c>receive</c> forever. Past <c>--peer-timeout</c> without data the receiver gives the
/// migration up, tells the source, and ends with 65 (the VM stays on the source). The fake source is a loopback
/// connection that stops sending; the timeouts are set small and nothing here measures time (the bound on each wait
/// only turns a hang into a failure).
/// </summary>
public class StalledSourceTests
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan Hang = TimeSpan.FromMinutes(1);

    private static byte[] HelloFrame(uint memoryBytes = 4u << 20) =>
        CraftedInputTests.Frame(FrameType.Hello, Hello(new VmConfiguration { Name = "stalled", Image = [], MemoryBytes = memoryBytes }));

    /// <summary>One page of a Pages frame: a count of 1, page 0, 4 KiB.</summary>
    private static byte[] OnePage()
    {
        byte[] pages = new byte[4 + 4 + 4096];
        pages[0] = 1;
        return pages;
    }

    [Test]
    public async Task ASourceThatStallsBetweenFramesIsGivenUp()
    {
        (string? error, byte[] told) = await ReceiveFromStalledSource([.. HelloFrame(), .. CraftedInputTests.Frame(FrameType.Pages, OnePage())]);

        AssertGivenUp(error, told);
    }

    [Test]
    public async Task ASourceThatStallsInTheMiddleOfAFrameIsGivenUp()
    {
        // A Pages frame announcing 1 MiB, of which 300 KiB come: more than one 256 KiB deadline chunk, then nothing.
        byte[] header = FrameHeader(FrameType.Pages, 1 << 20);
        (string? error, byte[] told) = await ReceiveFromStalledSource([.. HelloFrame(16u << 20), .. header, .. new byte[300 << 10]]);

        AssertGivenUp(error, told);
    }

    [Test]
    public async Task ASourceThatStallsInAFrameHeaderIsGivenUp()
    {
        (string? error, byte[] told) = await ReceiveFromStalledSource([.. HelloFrame(), (byte)FrameType.Pages, 0x10]);

        AssertGivenUp(error, told);
    }

    private static void AssertGivenUp(string? error, byte[] told)
    {
        Assert.That(told, Has.Length.GreaterThan(5), $"the source is told why ({error})");
        Assert.Multiple(() =>
        {
            Assert.That(error, Is.EqualTo("the source sent nothing for 1 s (receive --peer-timeout); the VM stays on the source"));
            Assert.That(told[0], Is.EqualTo((byte)FrameType.Failed), "the source is told why");
            Assert.That(PeerText(told[5..]), Is.EqualTo("the source sent nothing for 1 s (receive --peer-timeout)"));
        });
    }

    /// <summary>
    /// Sends <paramref name="bytes"/> to a receiver over loopback and then nothing, keeping the connection open; returns
    /// the receiver's reason and what it wrote back.
    /// </summary>
    private static async Task<(string? Error, byte[] Told)> ReceiveFromStalledSource(byte[] bytes)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 64L << 20 }, new CapturingConsole(), new TraceRecorder(null));
        Task<(VirtualMachine? Vm, string? Error)> receiving = Task.Run(async () =>
        {
            using TcpClient accepted = await listener.AcceptTcpClientAsync();
            return await LiveMigration.ReceiveAsync(system, accepted.GetStream(), peerTimeout: PeerTimeout);
        });
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        NetworkStream stream = client.GetStream();
        await stream.WriteAsync(bytes);

        (VirtualMachine? vm, string? error) = await receiving.WaitAsync(Hang);
        Assert.That(vm, Is.Null);
        using var told = new MemoryStream();
        await stream.CopyToAsync(told).WaitAsync(Hang);
        return (error, told.ToArray());
    }

    [Test]
    public async Task TheReceiverEndsWithOneLineWhenItsSourceStallsAfterTheHandshake()
    {
        using Process receiver = LiveMigrationTests.StartReceiver(out int port, "--insecure", "--peer-timeout", "1");
        Task<string> targetErr = receiver.StandardError.ReadToEndAsync();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        NetworkStream stream = client.GetStream();
        HandshakeResult handshake = await MigrationHandshake.ConnectAsync(stream, null, CancellationToken.None).WaitAsync(Hang);
        Assert.That(handshake.Outcome, Is.EqualTo(HandshakeOutcome.Authenticated), handshake.Reason);
        await stream.WriteAsync(HelloFrame());

        bool ended = receiver.WaitForExit(Hang);
        if (!ended)
        {
            receiver.Kill();
        }

        Assert.Multiple(() =>
        {
            Assert.That(ended, Is.True, "the receiver ends");
            Assert.That(receiver.ExitCode, Is.EqualTo(ExitStatus.InvalidImage));
            Assert.That(targetErr.Result, Is.EqualTo(
                "hybridvmm: error: migration did not complete: the source sent nothing for 1 s (receive --peer-timeout); the VM stays on the source\n"));
        });
    }

    [TestCase("0")]
    [TestCase("-1")]
    [TestCase("86401")]
    public void APeerTimeoutOutOfRangeIsAUsageError(string seconds)
    {
        CliProcess.Result result = CliProcess.Run("receive", "--insecure", "--peer-timeout", seconds);
        EndToEnd.InputBoundsTests.AssertRefused(result, ExitStatus.Usage, "--peer-timeout must be a number of seconds above 0 and at most 86400");
    }
}
