using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Migration;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>The migration stream's final state is the snapshot container: the same chunks, refused the same way.</summary>
public class MigrationChunkTests
{
    [Test]
    public async Task TheFinalFrameIsTheChunkContainerOfASnapshotWithTheLastDirtyPages()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        Task<byte[]> target = Task.Run(async () =>
        {
            using TcpClient client = await listener.AcceptTcpClientAsync();
            NetworkStream stream = client.GetStream();
            while (true)
            {
                (MigrationProtocol.FrameType type, byte[] payload) = await MigrationProtocol.ReadFrameAsync(stream, CancellationToken.None);
                if (type == MigrationProtocol.FrameType.Final)
                {
                    await MigrationProtocol.WriteFrameAsync(stream, MigrationProtocol.FrameType.Failed, "test target"u8.ToArray(), CancellationToken.None);
                    return payload;
                }
            }
        });

        using var source = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 72L << 20 }, new CapturingConsole(), new TraceRecorder(null));
        VirtualMachine vm = source.Root.CreateVm(new VmConfiguration { Name = "cpu", Image = Repository.ReadGuest("cpu") }, out _)!;
        source.Root.PauseAtInstruction(vm, 9_000_000);
        source.Root.Start(vm);
        await source.RunUntilIdleAsync();
        MigrationReport report;
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            report = await LiveMigration.SendAsync(source, vm, client.GetStream(), new MigrationOptions());
        }

        byte[] final = await target;
        SavedStateContainerReader container = SavedStateContainerReader.TryOpen(new MemoryStream(final), out string error)!;
        Assert.That(container, Is.Not.Null, error);
        Assert.That(report.Failure, Does.Contain("test target"));
        Assert.That(container.Chunks.Select(c => c.Tag), Is.EqualTo(new[]
        {
            "partition", "cpu.vp0", "interrupts.vp0", "statistics", "clock", "hv.partition", "synic.vp0", "apic.vp0", "root.requests",
            "device.com1", "device.provisioning", "device.fw-cfg", "device.port92", "device.i8042", "device.rtc", "device.pci", "device.pic", "device.pit", "device.ioapic", "device.acpi-pm", "memory",
        }));
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(final, out error)!;
        Assert.That(snapshot, Is.Not.Null, error);
        Assert.That(snapshot.Cpu.InstructionsRetired, Is.GreaterThanOrEqualTo(9_000_000));
    }

    [Test]
    public async Task ATargetRefusesAFinalStateWithAnUnknownChunkVersionNamingTheChunk()
    {
        byte[] final;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create("hello", Repository.ReadGuest("hello"));
            machine.System.Root.PauseAtInstruction(vm, 500);
            await machine.RunAsync();
            final = SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm));
        }

        // The SynIC chunk claims a version this build does not read; the checksum is recomputed, as anyone can.
        int at = (int)BinaryPrimitives.ReadInt64LittleEndian(final.AsSpan(final.Length - 48));
        while (Encoding.ASCII.GetString(final, at + 1, final[at]) != "synic.vp0")
        {
            at += 1 + final[at] + 20;
        }

        BinaryPrimitives.WriteInt32LittleEndian(final.AsSpan(at + 1 + final[at]), 4);
        SHA256.HashData(final.AsSpan(0, final.Length - 32)).CopyTo(final, final.Length - 32);

        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var targetSystem = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 72L << 20 }, new CapturingConsole(), new TraceRecorder(null));
        Task<(VirtualMachine? Vm, string? Error)> receiving = Task.Run(async () =>
        {
            using TcpClient accepted = await listener.AcceptTcpClientAsync();
            return await LiveMigration.ReceiveAsync(targetSystem, accepted.GetStream());
        });

        (MigrationProtocol.FrameType Type, byte[] Payload) answer;
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            NetworkStream stream = client.GetStream();
            await MigrationProtocol.WriteFrameAsync(stream, MigrationProtocol.FrameType.Hello, MigrationProtocol.Hello(new VmConfiguration { Name = "hello", Image = [] }), CancellationToken.None);
            await MigrationProtocol.WriteFrameAsync(stream, MigrationProtocol.FrameType.Final, final, CancellationToken.None);
            answer = await MigrationProtocol.ReadFrameAsync(stream, CancellationToken.None);
        }

        (VirtualMachine? moved, string? refusal) = await receiving;
        const string expected = "chunk 'synic.vp0' holds SynIC state version 4, which this build does not read (it writes version 3)";
        Assert.Multiple(() =>
        {
            Assert.That(moved, Is.Null);
            Assert.That(refusal, Is.EqualTo(expected));
            Assert.That(answer.Type, Is.EqualTo(MigrationProtocol.FrameType.Failed));
            Assert.That(Encoding.UTF8.GetString(answer.Payload), Is.EqualTo(expected));
        });
    }
}
