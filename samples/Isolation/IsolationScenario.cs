using HybridVmm.Reports;
using System.Security.Cryptography;
using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.Isolation;

/// <summary>
/// Partitions and isolation: five guests boot side by side on one hybrid hypervisor. Two misbehave, one
/// dividing by zero (#DE) and one writing far outside its RAM. Each is stopped alone with a diagnostic,
/// while the well-behaved guests run to completion: their output and their memory are exactly what they
/// are when each runs alone.
/// </summary>
public static class IsolationScenario
{
    private static readonly string[] Guests = { "hello", "fault", "cpu", "wild", "asmhello" };
    private const uint GuestMemory = 8u << 20;

    public static async Task<int> RunAsync(TextWriter output)
    {
        output.WriteLine("Isolation: 5 guests in 5 partitions; 'fault' divides by zero, 'wild' writes outside its RAM.");
        output.WriteLine();

        (Dictionary<string, string> together, Dictionary<string, PartitionExit> exits, Dictionary<string, string> memory, string summary) =
            await RunAsync(Guests, output);

        output.WriteLine();
        output.Write(summary);
        output.WriteLine();

        int failures = 0;
        foreach (string name in Guests)
        {
            PartitionExit exit = exits[name];
            bool misbehaves = name is "fault" or "wild";
            if (misbehaves)
            {
                bool ok = exit.Reason == StopReason.GuestFault;
                string firstLine = exit.Diagnostic?.Split('\n')[0] ?? "";
                output.WriteLine($"{name,-9} {(ok ? "stopped alone" : "NOT STOPPED"),-16} {firstLine}");
                failures += ok ? 0 : 1;
                continue;
            }

            // Run the same guest alone: output and final memory must be identical to the shared run.
            (Dictionary<string, string> aloneOut, _, Dictionary<string, string> aloneMemory, _) = await RunAsync(new[] { name }, TextWriter.Null);
            bool same = aloneOut[name] == together[name] && aloneMemory[name] == memory[name] && exit.Reason == StopReason.GuestExit;
            output.WriteLine($"{name,-9} {(same ? "unaffected" : "AFFECTED"),-16} output and RAM (sha256 {memory[name][..16]}...) identical to a run alone");
            failures += same ? 0 : 1;
        }

        output.WriteLine();
        output.WriteLine(failures == 0 ? "Isolation held: misbehaving guests hurt only themselves." : $"Isolation FAILED for {failures} guest(s).");
        return failures == 0 ? 0 : 1;
    }

    private static async Task<(Dictionary<string, string> Output, Dictionary<string, PartitionExit> Exits, Dictionary<string, string> MemoryHash, string Summary)>
        RunAsync(IReadOnlyList<string> names, TextWriter console)
    {
        var lines = new PrefixedLineConsole(console);
        var capture = new CapturingConsole(lines);
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 64L << 20 }, capture, new TraceRecorder(null));
        var vms = new List<VirtualMachine>();
        foreach (string name in names)
        {
            byte[] image = EmbeddedGuests.Load(name) ?? throw new InvalidOperationException($"missing embedded guest {name}");
            vms.Add(system.Root.CreateVm(new VmConfiguration { Name = name, Image = image, MemoryBytes = GuestMemory }, out VmCreationError? error)
                ?? throw new InvalidOperationException(error!.Message));
        }

        foreach (VirtualMachine vm in vms)
        {
            system.Root.Start(vm);
        }

        await system.RunUntilIdleAsync();
        lines.FlushPartialLines();

        var exits = new Dictionary<string, PartitionExit>();
        var hashes = new Dictionary<string, string>();
        byte[] ram = new byte[GuestMemory];
        foreach (VirtualMachine vm in vms)
        {
            exits[vm.Name] = await vm.Exited;
            system.Root.ReadMemoryOfStoppedVm(vm, 0, ram);
            hashes[vm.Name] = Convert.ToHexString(SHA256.HashData(ram)).ToLowerInvariant();
        }

        return (vms.ToDictionary(vm => vm.Name, capture.Text), exits, hashes, SummaryTable.Render(vms, system.Kernel.Clock.Ticks));
    }
}
