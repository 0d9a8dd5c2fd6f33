using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using HybridVmm.Cli.Common;
using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;
using static HybridVmm.HostOS.Migration.MigrationProtocol;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Issue 14, defect 5: crafted bytes in a snapshot or a migration stream are refused with one line, never an
/// exception (which the CLI reports as exit 70 and a stack trace). Each declared length is bounded before use.
/// </summary>
public class CraftedInputTests
{
    private static string VersionTwoFile => Path.Combine(Repository.Root, "tests", "HybridVmm.Tests", "Encapsulation", "Fixtures", "enlcon-v2.snap");

    // Format version 2: the payload starts after the 56-byte header with the name as a 7-bit-encoded length and UTF-8.
    private const int V2Payload = 56;

    [TestCase(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x7F }, TestName = "A version-2 name length of more than 32 bits is refused")]
    [TestCase(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x0F }, TestName = "A negative version-2 name length is refused")]
    [TestCase(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x07 }, TestName = "An overlong version-2 name length is refused")]
    public void AVersionTwoNameLengthIsBounded(byte[] length)
    {
        byte[] file = ResealV2(SpliceV2Name(File.ReadAllBytes(VersionTwoFile), length));
        VmSnapshot? snapshot = null;
        string error = "";
        Assert.DoesNotThrow(() => snapshot = SnapshotFormat.TryDeserialize(file, out error));
        Assert.That(snapshot, Is.Null);
        Assert.That(error, Does.StartWith("snapshot payload").And.Not.Contain("\n"));
    }

    [Test]
    public void ANegativeNameLengthInTheConfigurationChunkIsRefused()
    {
        byte[] file = WithPartitionChunk(Snapshots.SavedHello(), payload => BinaryPrimitives.WriteInt32LittleEndian(payload, -5));
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Does.Contain("a count of -5 is outside"));
    }

    [Test]
    public void AGuestMemoryOf0xFFFFFFFFFFFFFFFFBytesIsRefusedBeforeAnythingIsAllocated()
    {
        byte[] file = WithPartitionChunk(Snapshots.SavedHello(), payload =>
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(4 + BinaryPrimitives.ReadInt32LittleEndian(payload)), ulong.MaxValue));
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("chunk 'partition' (partition configuration state version 3) is malformed: guest memory of 18446744073709551615 bytes is not a whole number of 4 KiB pages between 4 KiB and 4096 MiB"));
    }

    [Test]
    public void TheCliRefusesASnapshotOfAGuestLargerThanItCanRunWithOneLine()
    {
        // One page more than the largest guest RAM (GuestRam.MaxBytes, 4 GiB): a size a u32 could not hold.
        byte[] file = WithPartitionChunk(Snapshots.SavedHello(), payload =>
            BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(4 + BinaryPrimitives.ReadInt32LittleEndian(payload)), (4096UL << 20) + 4096));
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        try
        {
            File.WriteAllBytes(path, file);
            CliProcess.Result result = CliProcess.Run("restore", path);
            EndToEnd.InputBoundsTests.AssertRefused(result, ExitStatus.InvalidImage, "guest memory of 4294971392 bytes is not a whole number of 4 KiB pages between 4 KiB and 4096 MiB");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ANameWithAnEscapeSequenceInASnapshotIsRefused()
    {
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(Snapshots.SavedHello(), out _)!;
        using var machine = new TestMachine();
        Assert.That(machine.System.Root.RestoreVm(snapshot with { Name = "evil\u001b]2;pwned\u0007" }, out VmCreationError? error), Is.Null);
        Assert.That(error!.Message, Does.StartWith("the snapshot's VM name 'evil?]2;pwned?' holds a control character"));
    }

    [Test]
    public void ASnapshotClaimingMoreThan64VcpusIsRefusedBeforeAnyIsDecoded()
    {
        byte[] file = WithChunks(Snapshots.SavedHello(), chunks =>
        {
            SavedStateChunk cpu = chunks.Single(c => c.Tag == "cpu.vp0"), interrupts = chunks.Single(c => c.Tag == "interrupts.vp0");
            for (int i = 1; i <= 64; i++)
            {
                chunks.Add(cpu with { Tag = $"cpu.vp{i}" });
                chunks.Add(interrupts with { Tag = $"interrupts.vp{i}" });
            }
        });
        VmSnapshot? snapshot = null;
        string error = "";
        Assert.DoesNotThrow(() => snapshot = SnapshotFormat.TryDeserialize(file, out error));
        Assert.That(snapshot, Is.Null);
        Assert.That(error, Is.EqualTo("snapshot holds 65 vCPUs, more than the 64 a VM may have"));
    }

    [Test]
    public void VcpuChunksWithAGapAreRefused()
    {
        byte[] file = WithChunks(Snapshots.SavedHello(), chunks =>
        {
            chunks.Add(chunks.Single(c => c.Tag == "cpu.vp0") with { Tag = "cpu.vp2" });
            chunks.Add(chunks.Single(c => c.Tag == "interrupts.vp0") with { Tag = "interrupts.vp2" });
            chunks.Add(chunks.Single(c => c.Tag == "synic.vp0") with { Tag = "synic.vp2" });
        });
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot holds chunk 'cpu.vp2' but no 'cpu.vp1': its vCPUs must be numbered from 0 with no gap"));
    }

    [Test]
    public void MoreVcpuRegisterChunksThanSynicChunksAreRefused()
    {
        byte[] file = WithChunks(Snapshots.SavedHello(), chunks =>
        {
            chunks.Add(chunks.Single(c => c.Tag == "cpu.vp0") with { Tag = "cpu.vp1" });
            chunks.Add(chunks.Single(c => c.Tag == "interrupts.vp0") with { Tag = "interrupts.vp1" });
        });
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot holds the registers of 2 vCPUs (chunks cpu.vp*) but the SynIC state of 1 (chunks synic.vp*): it must hold one of each per vCPU"));
    }

    [Test]
    public void ASecondVcpuWithoutItsInterruptStateIsRefused()
    {
        byte[] file = WithChunks(Snapshots.SavedHello(), chunks =>
        {
            chunks.Add(chunks.Single(c => c.Tag == "cpu.vp0") with { Tag = "cpu.vp1" });
            chunks.Add(chunks.Single(c => c.Tag == "synic.vp0") with { Tag = "synic.vp1" });
        });
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot has no chunk 'interrupts.vp1'"));
    }

    [Test]
    public void AnUnknownVcpuRunStateIsRefused()
    {
        byte[] file = WithChunks(Snapshots.SavedHello(), chunks => chunks.Add(new SavedStateChunk("runstate.vp0", 1, [7, .. new byte[16]])));
        Assert.That(SnapshotFormat.TryDeserialize(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("chunk 'runstate.vp0' (vCPU run state version 1) is malformed: run state 7 is neither 0 (runnable or halted) nor 1 (waiting for a start-up IPI)"));
    }

    [Test]
    public void AVcpuClaimingASliceLongerThanTheQuantumIsRefused()
    {
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(Snapshots.SavedHello(), out _)!;
        VpEnlightenedState vp = snapshot.Enlightened.VirtualProcessors[0] with { Run = new VpRunState(false, 0, 1L << 40) };
        using var machine = new TestMachine();
        VmSnapshot crafted = snapshot with { Enlightened = snapshot.Enlightened with { VirtualProcessors = [vp] } };

        Assert.That(machine.System.Root.RestoreVm(crafted, out VmCreationError? error), Is.Null);
        Assert.That(error!.Message, Is.EqualTo("snapshot's synthetic state cannot be restored: saved vCPU 0 claims 0 ticks used in its round and a slice budget of 1099511627776; this hypervisor's quantum is 100000 ticks"));
    }

    [Test]
    public void TheCliRefusesASnapshotClaimingMoreThan64VcpusWithOneLineAndStatus65()
    {
        byte[] file = WithChunks(Snapshots.SavedHello(), chunks =>
        {
            for (int i = 1; i <= 100; i++)
            {
                chunks.Add(chunks.Single(c => c.Tag == "synic.vp0") with { Tag = $"synic.vp{i}" });
            }
        });
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        try
        {
            File.WriteAllBytes(path, file);
            CliProcess.Result result = CliProcess.Run("restore", path);
            EndToEnd.InputBoundsTests.AssertRefused(result, ExitStatus.InvalidImage, "snapshot holds 101 vCPUs, more than the 64 a VM may have");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestCase(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x7F }, TestName = "A Hello name length of more than 32 bits is refused")]
    [TestCase(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x07 }, TestName = "An overlong Hello name length is refused")]
    [TestCase(new byte[] { 0x80 }, TestName = "A Hello cut in its name length is refused")]
    public async Task AHelloNameLengthIsBounded(byte[] length)
    {
        byte[] hello = [MigrationProtocol.Version, 0, 0, 0, .. length];
        (VmSnapshot? _, string? error, Exception? thrown) = await ReceiveCrafted(Frame(FrameType.Hello, hello));
        Assert.That(thrown, Is.Null);
        Assert.That(error, Does.StartWith("malformed Hello frame"));
    }

    [Test]
    public async Task AHelloFrameDeclaringMoreThanAHelloHoldsIsRefusedBeforeItIsRead()
    {
        byte[] header = new byte[5];
        header[0] = (byte)FrameType.Hello;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(1), 60u << 20);
        (_, string? error, Exception? thrown) = await ReceiveCrafted(header);
        Assert.That(thrown, Is.Null);
        Assert.That(error, Does.Contain("malformed migration frame (Hello of 62914560 bytes, at most 4096)"));
    }

    [Test]
    public async Task APagesFrameTooShortForItsCountIsRefused()
    {
        byte[] stream = [.. Frame(FrameType.Hello, Hello(new VmConfiguration { Name = "x", Image = [], MemoryBytes = 4u << 20 })), .. Frame(FrameType.Pages, [1, 0])];
        (_, string? error, Exception? thrown) = await ReceiveCrafted(stream);
        Assert.That(thrown, Is.Null);
        Assert.That(error, Does.Contain("malformed page frame"));
    }

    [Test]
    public async Task APreCopyPageOutsideTheAnnouncedMemoryIsRefused()
    {
        byte[] pages = new byte[4 + 4 + 4096];
        BinaryPrimitives.WriteInt32LittleEndian(pages, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(pages.AsSpan(4), 0x000F_FFFF);
        byte[] stream = [.. Frame(FrameType.Hello, Hello(new VmConfiguration { Name = "x", Image = [], MemoryBytes = 4u << 20 })), .. Frame(FrameType.Pages, pages)];
        (_, string? error, Exception? thrown) = await ReceiveCrafted(stream);
        Assert.That(thrown, Is.Null);
        Assert.That(error, Does.Contain("page 1048575 lies outside the VM's 4 MiB"));
    }

    [Test]
    public async Task AHelloAnnouncingMoreMemoryThanAGuestCanHaveIsRefused()
    {
        byte[] stream = Frame(FrameType.Hello, Hello(new VmConfiguration { Name = "x", Image = [], MemoryBytes = (4096UL << 20) + 4096 }));
        (_, string? error, Exception? thrown) = await ReceiveCrafted(stream);
        Assert.That(thrown, Is.Null);
        Assert.That(error, Does.Contain("malformed Hello frame: guest memory of 4294971392 bytes"));
    }

    [Test]
    public void TheReceiveCommandRefusesACraftedHelloWithOneLineAndStatus65()
    {
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string arg in new[] { Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), "receive", "--listen", "127.0.0.1:0", "--insecure" })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = System.Diagnostics.Process.Start(start)!;
        string listening = process.StandardError.ReadLine() ?? "";
        Assert.That(listening, Does.StartWith("hybridvmm: listening on 127.0.0.1:"));
        int port = int.Parse(listening[(listening.LastIndexOf(':') + 1)..]);
        using (var client = new TcpClient())
        {
            client.Connect(IPAddress.Loopback, port);
            HandshakeResult handshake = MigrationHandshake.ConnectAsync(client.GetStream(), null, CancellationToken.None).GetAwaiter().GetResult();
            Assert.That(handshake.Outcome, Is.EqualTo(HandshakeOutcome.Authenticated), handshake.Reason);
            client.GetStream().Write(Frame(FrameType.Hello, [MigrationProtocol.Version, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]));
            Assert.That(process.WaitForExit(TimeSpan.FromSeconds(60)), Is.True, "receive did not end");
        }

        string stderr = process.StandardError.ReadToEnd();
        Assert.Multiple(() =>
        {
            Assert.That(process.ExitCode, Is.EqualTo(ExitStatus.InvalidImage), stderr);
            Assert.That(stderr, Does.StartWith("hybridvmm: error: migration did not complete: malformed Hello frame"));
            Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
        });
    }

    /// <summary>Feeds <paramref name="bytes"/> to a receiver over a real loopback connection, then closes it.</summary>
    internal static async Task<(VmSnapshot? Unused, string? Error, Exception? Thrown)> ReceiveCrafted(byte[] bytes, bool acceptVm = false)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, new CapturingConsole(), new TraceRecorder(null));
        Task<(VirtualMachine? Vm, string? Error)> receiving = Task.Run(async () =>
        {
            using TcpClient accepted = await listener.AcceptTcpClientAsync();
            return await LiveMigration.ReceiveAsync(system, accepted.GetStream());
        });
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            try
            {
                await client.GetStream().WriteAsync(bytes);
            }
            catch (IOException)
            {
                // The receiver may refuse and close before it has read everything.
            }

            client.Client.Shutdown(SocketShutdown.Send);
            try
            {
                (VirtualMachine? vm, string? error) = await receiving.WaitAsync(TimeSpan.FromSeconds(60));
                if (!acceptVm)
                {
                    Assert.That(vm, Is.Null);
                }

                return (null, vm is null ? error : null, null);
            }
            catch (Exception e) when (e is not TimeoutException)
            {
                return (null, null, e);
            }
        }
    }

    internal static byte[] Frame(FrameType type, byte[] payload)
    {
        byte[] frame = new byte[5 + payload.Length];
        frame[0] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(1), (uint)payload.Length);
        payload.CopyTo(frame, 5);
        return frame;
    }

    /// <summary>Replaces the version-2 file's name (its length and bytes) by <paramref name="length"/> alone.</summary>
    private static byte[] SpliceV2Name(byte[] file, byte[] length)
    {
        int nameLength = file[V2Payload]; // "enlcon": one length byte
        return [.. file.AsSpan(0, V2Payload), .. length, .. file.AsSpan(V2Payload + 1 + nameLength)];
    }

    /// <summary>Sets the payload length and the SHA-256 of a version-2 file, as anyone can.</summary>
    private static byte[] ResealV2(byte[] file)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(16), (ulong)(file.Length - V2Payload));
        SHA256.HashData(file.AsSpan(V2Payload)).CopyTo(file, 24);
        return file;
    }

    /// <summary>The snapshot file's chunks, changed by <paramref name="change"/> (chunks added, removed or renamed), as a new, validly sealed file.</summary>
    private static byte[] WithChunks(byte[] file, Action<List<SavedStateChunk>> change)
    {
        SavedStateContainerReader reader = SavedStateContainerReader.TryOpen(new MemoryStream(file), out _)!;
        var chunks = reader.Chunks.Select(e => reader.TryReadChunk(e, int.MaxValue, out SavedStateChunk c, out _) ? c : null!).ToList();
        change(chunks);
        return SavedStateContainer.ToBytes(chunks);
    }

    private static byte[] WithPartitionChunk(byte[] file, Action<byte[]> change)
    {
        SavedStateContainerReader reader = SavedStateContainerReader.TryOpen(new MemoryStream(file), out _)!;
        var chunks = reader.Chunks.Select(e => reader.TryReadChunk(e, int.MaxValue, out SavedStateChunk c, out _) ? c : null!).ToList();
        change(chunks.Single(c => c.Tag == "partition").Payload);
        return SavedStateContainer.ToBytes(chunks);
    }
}
