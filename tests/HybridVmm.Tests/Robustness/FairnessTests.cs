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

    /// <summary>
    /// A guest whose slices are almost all exits the kernel serves itself (CPUID: 1,000 ticks of virtual time each, and
    /// nothing of the quantum) carries most of each slice into later rounds. With interrupts off and no other guest, a
    /// carry that ran out exactly at a round's end once left the scheduler waiting for work that was there, and the host
    /// hung at 0% CPU (kvm-unit-tests' vmexit_cpuid). The guest must run to its end, and the carry must neither lose a tick
    /// nor add one: the TSC it reads around its loop counts each instruction once, each CPUID's exit once and each device
    /// timer the root served once.
    /// </summary>
    [Test]
    public async Task AGuestOfKernelServedExitsWithInterruptsOffRunsToItsEndWithEveryTickCounted()
    {
        const int Loops = 500_000;
        const uint Results = 0x20000;
        byte[] image = FlatKernel.Build(a =>
        {
            Label top = a.CreateLabel();
            a.cli();
            a.rdtsc(); a.mov(edi, eax);
            a.mov(esi, Loops);
            a.Label(ref top);
            a.xor(eax, eax); a.cpuid();
            a.dec(esi); a.jnz(top);
            a.rdtsc(); a.sub(eax, edi);
            a.mov(__dword_ptr[Results], eax);
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("cpuid", image);
        await machine.RunAsync();
        Assert.That(vm.State, Is.EqualTo(PartitionState.Stopped), "the guest ran to its end");
        PartitionExit exit = await vm.Exited;
        Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
        byte[] delta = new byte[4];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Results, delta);

        // The first RDTSC, MOV EDI and MOV ESI; then per loop XOR, DEC and JNZ, and the CPUID, which retires in its exit
        // and costs that exit's 1,000 ticks (SyntheticExitCostTicks); and the PIT's device timers the root served
        // meanwhile (about one each 55 ms of virtual time), each an intercept's cost.
        long timers = vm.Statistics.InterceptsByKind.GetValueOrDefault("device-timer");
        Assert.That(timers, Is.GreaterThan(0), "the run spans several PIT periods");
        Assert.That(BitConverter.ToUInt32(delta), Is.EqualTo(3 + (Loops * (3 + 1_000)) + (timers * machine.System.Kernel.Options.InterceptCostTicks)));
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
