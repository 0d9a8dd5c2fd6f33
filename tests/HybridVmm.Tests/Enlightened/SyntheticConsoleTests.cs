using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Enlightened;

public class SyntheticConsoleTests
{
    private static VmConfiguration Config(string mode, byte[]? input = null) => new()
    {
        Name = "enlcon",
        Image = Repository.ReadGuest("enlcon"),
        MemoryBytes = 8u << 20,
        CommandLine = mode,
        SyntheticDevices = new[] { "synthcon" },
        ConsoleInput = input,
    };

    [Test]
    public async Task TheSyntheticConsolePrintsExactlyWhatTheUartPrints()
    {
        using var uart = new TestMachine();
        VirtualMachine u = uart.Create(Config("uart"));
        await uart.RunAsync();
        using var synth = new TestMachine();
        VirtualMachine s = synth.Create(Config("synth"));
        await synth.RunAsync();

        PartitionExit ue = await u.Exited, se = await s.Exited;
        Assert.That(ue.Reason, Is.EqualTo(StopReason.GuestExit), ue.Diagnostic);
        Assert.That(se.Reason, Is.EqualTo(StopReason.GuestExit), se.Diagnostic + "\n" + string.Join("\n", synth.TraceLines.TakeLast(30)));
        Assert.That(synth.Output(s), Is.EqualTo(uart.Output(u)));
        Assert.That(uart.Output(u), Does.StartWith("enlcon: 100 lines of text\n").And.EndWith("enlcon: done\n"));
    }

    [Test]
    public async Task ConsoleInputReachesTheGuest()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(Config("synth", "ping from the host\n"u8.ToArray()));
        await machine.RunAsync();
        Assert.That(machine.Output(vm), Does.EndWith("enlcon: console input: ping from the host\n"));
    }
}
