using HybridVmm.HostOS;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Robustness;

/// <summary>
/// Fairness under load (issue 14): a guest that floods COM1, or spins with interrupts off, or floods the root with
/// port reads, runs beside the <c>cpu</c> guest. The cpu guest must not notice: its output is QEMU's, and its
/// virtual time, instructions and exits are those of a run alone. The scheduler gives every vCPU its quantum each
/// round on virtual time, and a vCPU waiting for the root waits alone.
/// </summary>
public class FairnessTests
{
    private const uint Com1 = 0x3F8;

    /// <summary>Writes a byte to COM1's transmitter for ever, without looking at the line status first.</summary>
    private static byte[] Com1Flood() => FlatKernel.Build(a =>
    {
        Label top = a.CreateLabel();
        a.mov(dx, (ushort)Com1);
        a.mov(al, (byte)'x');
        a.Label(ref top);
        a.@out(dx, al);
        a.jmp(top);
    });

    /// <summary>Clears IF and jumps to itself: no interrupt, timer or exit can take the vCPU back.</summary>
    private static byte[] SpinWithInterruptsOff() => FlatKernel.Build(a =>
    {
        Label top = a.CreateLabel();
        a.cli();
        a.Label(ref top);
        a.jmp(top);
    });

    /// <summary>Reads COM1's line status for ever: every instruction is an exit the root serves.</summary>
    private static byte[] LineStatusPoll() => FlatKernel.Build(a =>
    {
        Label top = a.CreateLabel();
        a.mov(dx, (ushort)(Com1 + 5));
        a.Label(ref top);
        a.@in(al, dx);
        a.jmp(top);
    });

    private sealed record Outcome(string Output, long VirtualTicks, long Instructions, long Exits, StopReason Reason);

    [TestCase("com1-flood")]
    [TestCase("cli-spin")]
    [TestCase("lsr-poll")]
    public async Task TheCpuGuestBesideANoisyNeighbourRunsAsItDoesAlone(string neighbour)
    {
        byte[] noisy = neighbour switch
        {
            "com1-flood" => Com1Flood(),
            "cli-spin" => SpinWithInterruptsOff(),
            _ => LineStatusPoll(),
        };
        Outcome alone = await RunCpuAsync(null);
        Outcome beside = await RunCpuAsync(noisy);

        Assert.Multiple(() =>
        {
            Assert.That(alone.Output, Is.EqualTo(Repository.QemuOutput("cpu")), "alone, the cpu guest prints QEMU's output");
            Assert.That(beside.Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(beside.Output, Is.EqualTo(alone.Output), "beside the neighbour");
            Assert.That(beside.VirtualTicks, Is.EqualTo(alone.VirtualTicks), "virtual time from start to exit");
            Assert.That(beside.Instructions, Is.EqualTo(alone.Instructions));
            Assert.That(beside.Exits, Is.EqualTo(alone.Exits));
        });
    }

    /// <summary>Runs the cpu guest, beside <paramref name="neighbour"/> when given, until the cpu guest stops; the neighbour is then stopped.</summary>
    private static async Task<Outcome> RunCpuAsync(byte[]? neighbour)
    {
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 64L << 20 }, console, new TraceRecorder(null));
        VirtualMachine cpu = system.Root.CreateVm(new VmConfiguration { Name = "cpu", Image = Repository.ReadGuest("cpu"), MemoryBytes = 16 << 20 }, out _)!;
        VirtualMachine? noisy = neighbour is null
            ? null
            : system.Root.CreateVm(new VmConfiguration { Name = "noisy", Image = neighbour, MemoryBytes = 4 << 20 }, out _)!;
        if (noisy is not null)
        {
            system.Root.Start(noisy);
        }

        system.Root.Start(cpu);
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await system.RunUntilIdleAsync(limit.Token, () => cpu.State == PartitionState.Stopped);
        Assert.That(cpu.State, Is.EqualTo(PartitionState.Stopped), "the cpu guest finished within five minutes");
        PartitionExit exit = await cpu.Exited;
        return new Outcome(console.Text(cpu), cpu.Statistics.VirtualTicks(0), cpu.Statistics.InstructionsRetired, cpu.Statistics.TotalIntercepts, exit.Reason);
    }
}
