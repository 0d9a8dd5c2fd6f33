using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// High availability, offline (one process; the host failure on a real cluster is <see cref="ClusterHighAvailabilityScenario"/>): 'cpu' runs with a COM1 driver that fails once (injected) and 'fault' crashes on a
/// divide error; both are protected by a checkpoint-restart policy. 'hello' runs beside them unprotected.
/// The policy restarts 'cpu' from its last checkpoint and it completes; 'fault' crashes the same way each
/// time and the policy gives up after its restart budget. 'hello' never notices.
/// </summary>
public static class OfflineHighAvailabilityScenario
{
    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        output.WriteLine("High availability: checkpoint every 2,000,000 instructions, at most 2 restarts per VM.");
        output.WriteLine("'cpu' gets a COM1 driver that fails on its 120th access; 'fault' divides by zero; 'hello' is unprotected.");
        output.WriteLine();

        var trace = new TraceRecorder(null, keepInMemory: true);
        var lines = new PrefixedLineConsole(output);
        var console = new CapturingConsole(lines);
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 64L << 20 }, console, trace);
        var ha = new HighAvailabilityManager(system, new HighAvailabilityPolicy { CheckpointEveryInstructions = 2_000_000, MaxRestarts = 2 });
        VirtualMachine cpu = Create(system, "cpu", new VmConfiguration { Name = "cpu", Image = Load("cpu"), MemoryBytes = 8u << 20, InjectDeviceFailure = ("com1", 120) });
        VirtualMachine fault = Create(system, "fault", new VmConfiguration { Name = "fault", Image = Load("fault"), MemoryBytes = 8u << 20 });
        VirtualMachine hello = Create(system, "hello", new VmConfiguration { Name = "hello", Image = Load("hello"), MemoryBytes = 8u << 20 });
        ha.Protect(cpu);
        ha.Protect(fault);
        foreach (VirtualMachine vm in new[] { cpu, fault, hello })
        {
            system.Root.Start(vm);
        }

        IReadOnlyList<HighAvailabilityRecord> records = await ha.RunAsync();
        lines.FlushPartialLines();

        output.WriteLine();
        output.WriteLine("What the trace shows (detection, restart, resumption):");
        foreach (string line in trace.Lines!.Where(l => l.Contains("ha: detected") || l.Contains("ha: restart") || l.Contains("ha: giving up") || l.Contains("Lifecycle stopped")))
        {
            output.WriteLine("  " + line.Trim());
        }

        output.WriteLine();
        output.WriteLine($"{"vm",-8} {"checkpoints",11} {"restarts",8}  outcome");
        foreach (HighAvailabilityRecord r in records)
        {
            output.WriteLine($"{r.Name,-8} {r.Checkpoints,11} {r.Restarts,8}  {r.FinalOutcome}{(r.GaveUp ? " (gave up)" : "")}");
        }

        output.WriteLine($"{"hello",-8} {"-",11} {"-",8}  {hello.Exited.Result.Reason} (unprotected, ran throughout)");
        bool ok = records.Single(r => r.Name == "cpu").FinalOutcome == Hypervisor.Partitions.StopReason.GuestExit
            && records.Single(r => r.Name == "fault").GaveUp
            && hello.Exited.Result.Reason == Hypervisor.Partitions.StopReason.GuestExit;
        return ok ? 0 : 1;
    }

    private static byte[] Load(string name) => EmbeddedGuests.Load(name) ?? throw new InvalidOperationException($"missing guest {name}");

    private static VirtualMachine Create(HybridSystem system, string name, VmConfiguration config) =>
        system.Root.CreateVm(config, out VmCreationError? error) ?? throw new InvalidOperationException($"{name}: {error!.Message}");
}
