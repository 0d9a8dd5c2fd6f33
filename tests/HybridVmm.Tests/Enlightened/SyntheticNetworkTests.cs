using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Enlightened;

public class SyntheticNetworkTests
{
    private static VmConfiguration Config(string name, string mode) => new()
    {
        Name = name, Image = Repository.ReadGuest("enlnet"), MemoryBytes = 8u << 20, CommandLine = mode,
        SyntheticDevices = new[] { "synthcon", "synthnet" },
    };

    [Test]
    public async Task TwoGuestsPingEachOtherThroughTheVirtualSwitch()
    {
        using var machine = new TestMachine();
        VirtualMachine pong = machine.Create(Config("pong", "pong"));
        VirtualMachine ping = machine.Create(Config("ping", "ping"));
        await machine.RunAsync();
        PartitionExit pingExit = await ping.Exited, pongExit = await pong.Exited;
        string trace = string.Join("\n", machine.TraceLines.TakeLast(40));
        Assert.That(pingExit.Reason, Is.EqualTo(StopReason.GuestExit), pingExit.Diagnostic + machine.Output(ping) + trace);
        Assert.That(pongExit.Reason, Is.EqualTo(StopReason.GuestExit), pongExit.Diagnostic + machine.Output(pong) + trace);
        Assert.That(machine.Output(ping), Does.Contain("enlnet ping: echo reply seq=3 from 10.0.0.2 (02:48:56:00:00:01)"));
        Assert.That(machine.Output(pong), Does.Contain("enlnet pong: echo request seq=1 from 10.0.0.1 (02:48:56:00:00:02), replied"));
    }
}
