using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Migration;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// Load balancing, offline: a simulated cluster of three hypervisor hosts in one process, two physical cores each
/// (the real cluster is <see cref="ClusterBalancingScenario"/>). The
/// placement policy (first fit by free memory, to consolidate) packs six CPU-bound VMs onto one host; the
/// balancer sees it overloaded
/// (load = runnable vCPUs / cores) and live-migrates VMs to the least-loaded hosts until no host is over
/// capacity. Every VM still prints exactly what it prints alone.
/// </summary>
public static class OfflineLoadBalancingScenario
{
    private const int CoresPerHost = 2;
    private const uint VmMemory = 16u << 20;

    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        byte[] image = EmbeddedGuests.Load("cpu")!;
        var hosts = new List<Host>();
        for (int i = 0; i < 3; i++)
        {
            var console = new CapturingConsole();
            hosts.Add(new Host($"host{(char)('A' + i)}", new HybridSystem(new HypervisorOptions { HostMemoryBytes = 160L << 20 }, console, new TraceRecorder(null)), console));
        }

        try
        {
            // Placement: first fit by free host memory, the consolidation policy that keeps idle hosts free
            // (to power down). It packs all six VMs onto host A, which has the memory but only two cores.
            output.WriteLine("placement policy: first fit by free host memory (consolidate)");
            for (int i = 1; i <= 6; i++)
            {
                Host host = hosts.First(h => h.System.Root.FreeHostMemoryBytes >= VmMemory);
                VirtualMachine vm = host.System.Root.CreateVm(new VmConfiguration { Name = $"vm{i}", Image = image, MemoryBytes = VmMemory }, out _)!;
                host.System.Root.PauseAtInstruction(vm, 2_000_000 + i * 100_000);
                host.System.Root.Start(vm);
                host.Vms.Add(vm);
                output.WriteLine($"  place vm{i} on {host.Name}");
            }

            await Task.WhenAll(hosts.Select(h => h.System.RunUntilIdleAsync()));
            output.WriteLine("before balancing:");
            PrintLoad(output, hosts);

            var printedBefore = new Dictionary<string, string>();
            int migrations = 0;
            while (true)
            {
                Host busiest = hosts.MaxBy(h => h.Load)!;
                Host idlest = hosts.MinBy(h => h.Load)!;
                if (busiest.Load <= 1.0 || busiest.Vms.Count - idlest.Vms.Count < 2)
                {
                    break;
                }

                VirtualMachine vm = busiest.Vms[^1];
                (VirtualMachine moved, MigrationReport report) = await MigrateAsync(busiest, idlest, vm);
                busiest.Vms.Remove(vm);
                idlest.Vms.Add(moved);
                printedBefore[vm.Name] = printedBefore.GetValueOrDefault(vm.Name, "") + busiest.Console.Text(vm);
                migrations++;
                output.WriteLine($"  migrate {vm.Name}: {busiest.Name} -> {idlest.Name} ({report.PagesPerRound.Count} pre-copy round(s), {report.FinalPages} pages in the final copy)");
            }

            output.WriteLine("after balancing:");
            PrintLoad(output, hosts);

            foreach (Host host in hosts)
            {
                foreach (VirtualMachine vm in host.Vms)
                {
                    host.System.Root.Start(vm);
                }
            }

            await Task.WhenAll(hosts.Select(h => h.System.RunUntilIdleAsync()));
            string alone = await RunAloneAsync(image);
            int wrong = 0;
            foreach (Host host in hosts)
            {
                foreach (VirtualMachine vm in host.Vms)
                {
                    string whole = printedBefore.GetValueOrDefault(vm.Name, "") + host.Console.Text(vm);
                    wrong += whole == alone && vm.Exited.Result.Reason == StopReason.GuestExit ? 0 : 1;
                }
            }

            output.WriteLine($"{migrations} migration(s); every VM's output equals a run alone: {(wrong == 0 ? "yes" : $"NO ({wrong})")}");
            return wrong == 0 ? 0 : 1;
        }
        finally
        {
            foreach (Host host in hosts)
            {
                host.System.Dispose();
            }
        }
    }

    private static void PrintLoad(TextWriter output, IReadOnlyList<Host> hosts)
    {
        foreach (Host host in hosts)
        {
            output.WriteLine($"  {host.Name}: {host.Vms.Count} vCPU(s) on {CoresPerHost} cores, load {host.Load:0.00}{(host.Load > 1.0 ? "  OVERLOADED" : "")}  [{string.Join(" ", host.Vms.Select(v => v.Name))}]");
        }
    }

    private static async Task<(VirtualMachine, MigrationReport)> MigrateAsync(Host from, Host to, VirtualMachine vm)
    {
        (MigrationReport report, VirtualMachine? moved) = await LiveMigration.OverLoopbackAsync(from.System, vm, to.System, new MigrationOptions());
        return (moved ?? throw new InvalidOperationException(report.Failure), report);
    }

    private static async Task<string> RunAloneAsync(byte[] image)
    {
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 24L << 20 }, console, new TraceRecorder(null));
        VirtualMachine vm = system.Root.CreateVm(new VmConfiguration { Name = "alone", Image = image, MemoryBytes = 16u << 20 }, out _)!;
        system.Root.Start(vm);
        await system.RunUntilIdleAsync();
        return console.Text(vm);
    }

    private sealed class Host(string name, HybridSystem system, CapturingConsole console)
    {
        public string Name { get; } = name;

        public HybridSystem System { get; } = system;

        public CapturingConsole Console { get; } = console;

        public List<VirtualMachine> Vms { get; } = new();

        public double Load => (double)Vms.Count / CoresPerHost;
    }
}
