using HybridVmm.Hardware.Cpu;
using HybridVmm.Cli.Common;
using System.CommandLine;
using System.Diagnostics;
using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Scheduling;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Commands;

/// <summary>
/// <c>hybridvmm bench</c>: boots a CPU-bound guest (the embedded <c>cpu</c> sample by default) several times
/// with tracing off and reports guest MIPS. The only place the wall clock is read; it never reaches a trace.
/// </summary>
internal static class BenchCommand
{
    private const uint GuestMemoryBytes = 16u << 20;

    public static Command Create()
    {
        var image = new Option<string>("--guest") { Description = "Embedded guest name or ELF path to run", DefaultValueFactory = _ => "cpu" };
        var runs = new Option<int>("--runs") { Description = "Timed runs (the best is reported)", DefaultValueFactory = _ => 5 };
        var max = new Option<long>("--max-instructions") { Description = "Stop each run's guest after N instructions (0 = no limit); the status is then 124" };
        var command = new Command("bench", "Measure guest instructions per second on a CPU-bound guest") { image, runs, max };
        command.SetAction((result, cancellationToken) => BenchAsync(result.GetValue(image)!, result.GetValue(runs), result.GetValue(max), cancellationToken));
        return command;
    }

    private static async Task<int> BenchAsync(string guest, int runs, long maxInstructions, CancellationToken cancellationToken)
    {
        if (maxInstructions < 0)
        {
            Console.Error.WriteLine("hybridvmm: error: --max-instructions must be zero or positive");
            return ExitStatus.Usage;
        }

        (byte[]? bytes, int refused) = await GuestFile.LoadGuestAsync(guest, GuestMemoryBytes, Console.Error, cancellationToken);
        if (bytes is null)
        {
            return refused;
        }

        if (runs < 1)
        {
            Console.Error.WriteLine("hybridvmm: error: --runs must be at least 1");
            return ExitStatus.Usage;
        }

        double best = 0;
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var signals = new TerminationSignals(interrupt);
        for (int run = 0; run <= runs; run++)
        {
            var config = new VmConfiguration { Name = "bench", Image = bytes, MemoryBytes = GuestMemoryBytes, InstructionLimit = maxInstructions };
            using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 24L << 20 }, new RawStreamConsole(Stream.Null), new TraceRecorder(null));
            VirtualMachine? vm = system.Root.CreateVm(config, out VmCreationError? error);
            if (vm is null)
            {
                return Outcome.CreationFailed(error!, Console.Error);
            }

            var latency = new ExitLatency();
            system.Kernel.Scheduler.ExitLatency = latency;
            var clock = Stopwatch.StartNew();
            system.Root.Start(vm);
            using (Terminal.StatusLine.Start(system, Console.Error, run == 0 ? "warm-up" : $"run {run}", besideGuestOutput: false))
            {
                await system.RunUntilIdleAsync(interrupt.Token);
            }

            clock.Stop();
            if (interrupt.IsCancellationRequested)
            {
                return TerminationSignals.ReportInterrupted(Console.Error);
            }

            PartitionExit exit = await vm.Exited;
            if (exit.Reason != StopReason.GuestExit)
            {
                return Outcome.Report(vm, exit, Console.Error);
            }

            long instructions = vm.Statistics.InstructionsRetired;
            double mips = instructions / clock.Elapsed.TotalSeconds / 1e6;
            // Run 0 warms up the JIT (tiered compilation) and is not counted.
            Console.WriteLine(run == 0
                ? $"warm-up: {instructions} instructions in {clock.Elapsed.TotalSeconds:0.000} s"
                : $"run {run}: {instructions} instructions in {clock.Elapsed.TotalSeconds:0.000} s = {mips:0.0} MIPS");
            if (latency.Measured > 0 && latency.Quantile(0.5) is { } median && latency.Quantile(0.99) is { } p99)
            {
                // The port intercepts' round trips: guest -> kernel -> root worker -> reply -> back in the guest.
                Console.WriteLine($"  {latency.Measured} port intercepts = {latency.Measured / clock.Elapsed.TotalSeconds / 1e3:0.0} k/s; " +
                    $"round trip median {median.TotalMicroseconds:0.00} µs, 99th percentile {p99.TotalMicroseconds:0.00} µs");
            }

            JitStatistics jit = vm.Statistics.Translator;
            if (run == 0 && jit.BlockEntries + jit.BlocksRefused > 0)
            {
                // The translator's share: instructions retired inside blocks, and what compiling them cost.
                Console.WriteLine($"  tier 1: {jit.BlocksCompiled} blocks compiled ({jit.BlocksRefused} starts refused) in " +
                    $"{jit.CompileTime.TotalMilliseconds:0} ms = {jit.CompileTime.TotalMicroseconds / Math.Max(1, jit.BlocksCompiled + jit.BlocksRefused):0} µs a block; " +
                    $"{jit.BlockEntries} entries, {100.0 * jit.InstructionsInBlocks / Math.Max(1, instructions):0.0} % of instructions in blocks, " +
                    $"{100.0 * jit.BlockExitsEarly / Math.Max(1, jit.BlockEntries):0.0} % of entries left before their last instruction (a side exit or a bail-out)");
            }
            if (run > 0)
            {
                best = Math.Max(best, mips);
            }
        }

        Console.WriteLine($"best: {best:0.0} MIPS ({guest}, {runs} runs)");
        return ExitStatus.Success;
    }
}
