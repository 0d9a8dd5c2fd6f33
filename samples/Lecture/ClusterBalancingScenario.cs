using System.Text.Json;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// Load balancing on a real cluster (docs/cluster.md#live-migration-and-the-balancer): Redis and three
/// <c>hybridvmm serve --cluster</c> processes on this machine. Six CPU-bound VMs are put on one host, as a consolidating
/// placement would; the cluster's balancer sees that host overloaded (six vCPUs of the two it offers: 300%) and
/// live-migrates VMs off it, one at a time, between the processes, until no move would lower the busiest host's load.
/// Every VM still prints exactly what it prints alone.
/// </summary>
public static class ClusterBalancingScenario
{
    private const int Ticks = 40;

    /// <summary>Instructions between two lines of output: enough that no VM ends before the balancer has spread them.</summary>
    private const int TickInstructions = 50_000_000;

    private static readonly string[] HostNames = ["hostA", "hostB", "hostC"];

    public static Task<int> RunAsync(TextWriter output, TextWriter measurements) => Task.Run(() => Run(output, measurements));

    private static int Run(TextWriter output, TextWriter measurements)
    {
        output.WriteLine("a real cluster: Redis and three 'hybridvmm serve --cluster' processes on this machine");
        output.WriteLine("each host offers 2 vCPUs; a host's load is its VMs' vCPUs (or memory) against what it offers");
        output.WriteLine("the balancer looks five times a second and moves one running VM while the busiest host's load is 50 points or more above the idlest's");
        // Each host offers two vCPUs whatever this machine has, so that the loads, and the lesson, are the same everywhere.
        using ClusterLab? lab = ClusterLab.Start(HostNames, ["--balance-every", "0.2", "--host-vcpus", HostVcpus.ToString()], output);
        if (lab is null)
        {
            return 1;
        }

        if (lab.TickingGuestRunAlone(Ticks, TickInstructions, output) is not (string guest, string alone))
        {
            return 1;
        }

        string[] names = Enumerable.Range(1, 6).Select(i => $"vm{i}").ToArray();
        foreach (string name in names)
        {
            lab.Cluster("vm", "create", name, "--image", guest, "--memory", "4M", "--host", "hostA");
            output.WriteLine($"  place {name} on hostA (vm create --host hostA, as a consolidating placement would)");
        }

        // Started together: the balancer moves only running VMs, and one started long before the others would run
        // alone on its new host and finish before the cluster is balanced.
        Parallel.ForEach(names, name => lab.Cluster("vm", "start", name));

        output.WriteLine($"before balancing: hostA 6 VMs ({Load(6)}), hostB 0, hostC 0");
        JsonElement[] done = [];
        lab.WaitFor(() => lab.TryVms() is { } vms && (done = vms).Length == names.Length && done.All(v => v.GetProperty("state").GetString() == "stopped"), "every VM to finish");

        // The moves in the order they happened, replayed from 6/0/0 until the load is balanced. VMs that finish early
        // may cause a later move; those are measurements, not part of the lesson's result.
        var events = done
            .SelectMany(vm => vm.GetProperty("history").EnumerateArray().Select(e => (Vm: vm.GetProperty("name").GetString()!, At: e.GetProperty("at").GetDateTime(),
                What: e.GetProperty("what").GetString()!)))
            .Where(e => e.What.StartsWith("migrat", StringComparison.Ordinal) || e.What.StartsWith("stopped on ", StringComparison.Ordinal))
            .OrderBy(e => e.At)
            .ToArray();
        var load = HostNames.ToDictionary(h => h, h => h == "hostA" ? names.Length : 0);
        int untilBalanced = 0, moves = 0;
        bool balanced = false;
        foreach ((string vm, DateTime at, string what) in events)
        {
            measurements.WriteLine($"  {at:HH:mm:ss.fff} {vm}: {what}");
            if (!what.StartsWith("migrated from ", StringComparison.Ordinal) && !what.StartsWith("stopped on ", StringComparison.Ordinal))
            {
                continue; // a move begun, refused or failed: in the measurements only
            }

            string[] words = what.Split(' ');
            if (words[0] == "stopped")
            {
                if (!balanced)
                {
                    output.WriteLine($"{vm} finished before the cluster was balanced: the guests are too short for this machine's speed");
                    return 1;
                }

                continue;
            }

            moves++;
            if (!balanced)
            {
                load[words[2]]--;
                load[words[4]]++;
                untilBalanced++;
                balanced = load.Values.Max() - load.Values.Min() < 2;
            }
        }

        output.WriteLine($"the balancer live-migrated {untilBalanced} VMs between the processes to get there:");
        output.WriteLine($"after balancing: {string.Join(", ", HostNames.Select(h => $"{h} {load[h]} VMs ({Load(load[h])})"))}");
        measurements.WriteLine($"  {moves - untilBalanced} more move(s) as VMs finished at different times");

        int wrong = 0;
        foreach (JsonElement vm in done)
        {
            string name = vm.GetProperty("name").GetString()!;
            string host = vm.GetProperty("hostName").GetString()!;
            wrong += lab.ConsoleOf(host, name) == alone ? 0 : 1;
        }

        output.WriteLine($"every VM's output, across its migrations, equals a run alone: {(wrong == 0 ? "yes" : $"NO ({wrong})")}");
        return wrong == 0 && balanced ? 0 : 1;
    }

    /// <summary>A host's load with <paramref name="vms"/> of the scenario's VMs (one vCPU each) against the two vCPUs it offers.</summary>
    private static string Load(int vms) => $"{vms * 100 / HostVcpus}%";

    private const int HostVcpus = 2;
}
