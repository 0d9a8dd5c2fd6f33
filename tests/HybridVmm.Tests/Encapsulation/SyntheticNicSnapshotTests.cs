using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>A synthetic NIC's channel and MAC travel with the VM: a restored guest answers pings on the same address.</summary>
public class SyntheticNicSnapshotTests
{
    private static VmConfiguration Enlnet(string name, string mode) => new()
    {
        Name = name, Image = Repository.ReadGuest("enlnet"), MemoryBytes = 8u << 20, CommandLine = mode,
        SyntheticDevices = new[] { "synthcon", "synthnet" },
    };

    [Test]
    public async Task AGuestSavedWhileWaitingForFramesAnswersPingsAfterTheRestoreWithItsOwnMac()
    {
        byte[] file;
        string before;
        using (var machine = new TestMachine())
        {
            // Partition 1: MAC 02:48:56:00:00:01. Alone on the switch, it opens its NIC and waits in HLT for a frame.
            VirtualMachine pong = machine.Create(Enlnet("pong", "pong"));
            machine.System.Root.Start(pong);
            await machine.System.RunUntilIdleAsync(stopWhen: () => machine.System.Root.VirtualProcessorState(pong) == VpState.Halted);
            machine.System.Root.Pause(pong);
            VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(pong);
            Assert.That(snapshot.Channels.Select(c => (c.Device, c.Open)), Is.EqualTo(new[] { ("synthcon", true), ("synthnet", true) }));
            Assert.That(snapshot.Enlightened.VirtualProcessors[0].Halted, Is.True);
            before = machine.Output(pong);
            file = SnapshotFormat.Serialize(snapshot);
        }

        using (var machine = new TestMachine())
        {
            // Here the restored VM is partition 2, which would have MAC :02; the ping guest, partition 3, has :03.
            machine.Create("hello", Repository.ReadGuest("hello"));
            VirtualMachine pong = machine.System.Root.RestoreVm(SnapshotFormat.TryDeserialize(file, out _)!, out VmCreationError? error)!;
            Assert.That(pong, Is.Not.Null, error?.Message);
            VirtualMachine ping = machine.Create(Enlnet("ping", "ping"));
            await machine.RunAsync();

            PartitionExit pongExit = await pong.Exited, pingExit = await ping.Exited;
            Assert.Multiple(() =>
            {
                Assert.That(pong.Partition.Id, Is.EqualTo(2));
                Assert.That(pongExit.Reason, Is.EqualTo(StopReason.GuestExit), pongExit.Diagnostic + machine.Output(pong));
                Assert.That(pingExit.Reason, Is.EqualTo(StopReason.GuestExit), pingExit.Diagnostic + machine.Output(ping));
                Assert.That(machine.Output(ping), Does.Contain("enlnet ping: echo reply seq=3 from 10.0.0.2 (02:48:56:00:00:01)"), "the MAC came with the snapshot");
                Assert.That(before + machine.Output(pong), Does.Contain("enlnet pong: echo request seq=3 from 10.0.0.1 (02:48:56:00:00:03), replied"));
            });
            TestContext.Out.WriteLine(before + "---- restored ----\n" + machine.Output(pong));
        }
    }
}
