using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// A multiprocessor partition beside a uniprocessor one. A guest of four vCPUs (<see cref="SmpWorkGuest"/>) starts its
/// application processors with INIT and start-up IPIs and spreads eight rounds of work over them with fixed IPIs; a
/// one-vCPU partition runs the CPU-bound sample beside it. The hypervisor runs all five vCPUs on one host thread, in
/// rounds of virtual time: each runnable vCPU gets its quantum, a halted one gives its turn back until an interrupt
/// wakes it. The report shows each vCPU's instructions, halts and IPIs, and each partition's share of the machine.
/// </summary>
public static class MultiprocessorScenario
{
    public const int Processors = 4;

    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        var console = new CapturingConsole();
        var options = new HypervisorOptions { HostMemoryBytes = 64L << 20 };
        using var system = new HybridSystem(options, console, new TraceRecorder(null, keepInMemory: false));
        VirtualMachine smp = Create(system, new VmConfiguration { Name = "smp", Image = SmpWorkGuest.Build(Processors), MemoryBytes = 8u << 20, Processors = Processors });
        VirtualMachine cpu = Create(system, new VmConfiguration { Name = "cpu", Image = EmbeddedGuests.Load("cpu")!, MemoryBytes = 8u << 20 });
        var wall = System.Diagnostics.Stopwatch.StartNew();
        system.Root.Start(smp);
        system.Root.Start(cpu);
        await system.RunUntilIdleAsync();
        wall.Stop();

        PartitionExit smpExit = await smp.Exited, cpuExit = await cpu.Exited;
        string[] totals = console.Text(smp).TrimEnd('\n').Split('\n');
        string[] expected = [.. Enumerable.Range(0, SmpWorkGuest.Rounds).Select(ExpectedTotal)];
        bool smpOk = smpExit.Reason == StopReason.GuestExit && totals.SequenceEqual(expected);
        bool cpuOk = cpuExit.Reason == StopReason.GuestExit && console.Text(cpu).Contains("cpu: done", StringComparison.Ordinal);

        output.WriteLine($"partition 'smp': {Processors} vCPUs; the BSP starts the APs with INIT and start-up IPIs, then gives each a slice of");
        output.WriteLine($"every round's sum of squares in its mailbox and wakes it with a fixed IPI; each AP answers with an IPI when done.");
        output.WriteLine("partition 'cpu': 1 vCPU, the CPU-bound sample, beside it.");
        output.WriteLine();
        output.WriteLine($"the rounds' totals ({SmpWorkGuest.Rounds}, as eight hex digits): {string.Join(' ', totals)}");
        output.WriteLine($"every total is the sum of squares it should be: {(smpOk ? "yes" : "NO")}; the cpu guest finished as alone: {(cpuOk ? "yes" : "NO")}");
        output.WriteLine();
        output.WriteLine($"{"partition",-10} {"vCPU",4} {"instructions",14} {"share",6} {"halts",6} {"IPIs sent",10} {"IPIs received",14}");
        long all = new[] { smp, cpu }.Sum(vm => system.Root.VcpuStatistics(vm).Sum(v => v.Instructions));
        foreach (VirtualMachine vm in new[] { smp, cpu })
        {
            foreach (VcpuStatistics v in system.Root.VcpuStatistics(vm))
            {
                output.WriteLine($"{vm.Name,-10} {v.Index,4} {v.Instructions,14:N0} {100.0 * v.Instructions / all,5:F1}% {v.Halts,6:N0} {v.IpisSent,10:N0} {v.IpisReceived,14:N0}");
            }
        }

        long cpuTicks = cpu.Statistics.VirtualTicks(cpu.Statistics.StopTicks);
        long cpuAloneTicks = await CpuGuestAloneAsync();
        output.WriteLine();
        output.WriteLine("How the hypervisor shared the machine: one host thread ran all five vCPUs in rounds of virtual time, each");
        output.WriteLine($"runnable vCPU a quantum of {options.Quantum:N0} ticks a round ({system.Kernel.Scheduler.Rounds:N0} rounds). A halted vCPU took no quantum until an");
        output.WriteLine("interrupt woke it: the APs waited for their IPIs halted, costing the host nothing, and the BSP halted for their answers.");
        output.WriteLine($"virtual time: smp {smp.Statistics.VirtualTicks(smp.Statistics.StopTicks):N0} ticks, cpu {cpuTicks:N0} ticks; the cpu guest alone: {cpuAloneTicks:N0} ticks");
        bool isolated = cpuTicks == cpuAloneTicks;
        output.WriteLine($"the cpu guest's virtual time is what it is alone (each vCPU as if on its own processor): {(isolated ? "yes" : "NO")}");
        measurements.WriteLine($"  wall time: {wall.Elapsed.TotalSeconds:F2} s");
        return smpOk && cpuOk && isolated ? 0 : 1;
    }

    private static async Task<long> CpuGuestAloneAsync()
    {
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, new CapturingConsole(), new TraceRecorder(null, keepInMemory: false));
        VirtualMachine cpu = Create(system, new VmConfiguration { Name = "cpu", Image = EmbeddedGuests.Load("cpu")!, MemoryBytes = 8u << 20 });
        system.Root.Start(cpu);
        await system.RunUntilIdleAsync();
        await cpu.Exited;
        return cpu.Statistics.VirtualTicks(cpu.Statistics.StopTicks);
    }

    /// <summary>Round <paramref name="round"/>'s total: the squares of its numbers, modulo 2^32, as the guest prints it.</summary>
    public static string ExpectedTotal(int round)
    {
        uint total = 0;
        uint first = (uint)(round * Processors) * SmpWorkGuest.SliceLength;
        for (uint i = first; i < first + (Processors * SmpWorkGuest.SliceLength); i++)
        {
            total += i * i;
        }

        return total.ToString("X8");
    }

    private static VirtualMachine Create(HybridSystem system, VmConfiguration configuration) =>
        system.Root.CreateVm(configuration, out VmCreationError? error) ?? throw new InvalidOperationException($"{configuration.Name}: {error!.Message}");
}
