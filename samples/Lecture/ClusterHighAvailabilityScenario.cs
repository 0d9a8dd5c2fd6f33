using System.Globalization;
using System.Text.Json;

namespace HybridVmm.Samples.Lecture;

/// <summary>
/// High availability on a real cluster (docs/cluster.md#high-availability): Redis and three <c>hybridvmm serve
/// --cluster</c> processes on this machine. Six protected VMs are placed two per host and checkpointed into a shared
/// directory; one host is killed with SIGKILL, as a machine that loses power. Orleans' membership declares it dead,
/// and its VMs restart on the survivors from their last checkpoints, under a new epoch. Every VM's whole output, across
/// the failover, equals a run alone.
/// </summary>
public static class ClusterHighAvailabilityScenario
{
    private const int Ticks = 40;

    /// <summary>Instructions between two lines of output: enough that every VM still runs when its host dies.</summary>
    private const int TickInstructions = 50_000_000;

    private const int CheckpointEvery = 100_000_000;

    private static readonly string[] HostNames = ["hostA", "hostB", "hostC"];

    public static Task<int> RunAsync(TextWriter output, TextWriter measurements) => Task.Run(() => Run(output, measurements));

    private static int Run(TextWriter output, TextWriter measurements)
    {
        output.WriteLine("a real cluster: Redis and three 'hybridvmm serve --cluster' processes on this machine");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"six protected VMs, each checkpointed every {CheckpointEvery:N0} instructions into a shared directory"));
        output.WriteLine("a host is declared dead after 3 missed probes of 2 s");
        using ClusterLab? lab = ClusterLab.Start(HostNames, ["--balance-every", "0", "--probe-timeout", "2", "--missed-probes", "3"], output);
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
            lab.Cluster("vm", "create", name, "--image", guest, "--memory", "4M", "--protected", "--checkpoint-every", CheckpointEvery.ToString(CultureInfo.InvariantCulture));
        }

        JsonElement[] placed = lab.Vms();
        output.WriteLine($"placement (least-loaded): {string.Join(", ", HostNames.Select(h => $"{h} {placed.Count(v => v.GetProperty("hostName").GetString() == h)} VMs"))}");
        // Started together, so that no VM is far ahead of the others (and done) when its host dies.
        Parallel.ForEach(names, name => lab.Cluster("vm", "start", name));

        // Killed once each of its VMs has a checkpoint in Redis (a host writes the next checkpoint only once the grain
        // took the one before, so a second checkpoint file means the first is recorded).
        const string victim = "hostA";
        string[] onVictim = placed.Where(v => v.GetProperty("hostName").GetString() == victim).Select(v => v.GetProperty("name").GetString()!).ToArray();
        lab.WaitFor(() => onVictim.All(n => File.Exists(Path.Combine(lab.CheckpointDirectory, $"{n}.e1.1.console"))), "the victim's VMs to have a checkpoint");
        lab.Kill(victim);
        output.WriteLine($"{victim} killed (SIGKILL) while its {onVictim.Length} VMs ran");

        JsonElement[] done = [];
        lab.WaitFor(() => lab.TryVms() is { } vms && (done = vms).All(v => v.GetProperty("state").GetString() is "stopped" or "lost"), "every VM to finish");
        int failedOver = 0, wrong = 0, lost = 0;
        foreach (JsonElement vm in done)
        {
            string name = vm.GetProperty("name").GetString()!;
            string host = vm.GetProperty("hostName").GetString()!;
            if (vm.GetProperty("state").GetString() == "lost")
            {
                lost++;
                continue;
            }

            string before = "";
            if (vm.GetProperty("lastFailover") is { ValueKind: JsonValueKind.Object } report)
            {
                failedOver++;
                wrong += vm.GetProperty("epoch").GetInt64() == 2 ? 0 : 1;
                before = File.ReadAllText(report.GetProperty("checkpoint").GetProperty("consolePath").GetString()!, System.Text.Encoding.Latin1);
                measurements.WriteLine($"  {name}: {report.GetProperty("deadHost")} -> {report.GetProperty("newHost")}: detection {report.GetProperty("detectionSeconds")} s, " +
                    $"restart {report.GetProperty("restartSeconds")} s, at least {report.GetProperty("instructionsLost")} instructions lost since the checkpoint at " +
                    $"{report.GetProperty("checkpointInstructions")}");
            }

            if (host == victim || before + lab.ConsoleOf(host, name) != alone)
            {
                wrong++;
                output.WriteLine($"  {name} ended on {host}, epoch {vm.GetProperty("epoch")}: " +
                    string.Join("; ", vm.GetProperty("history").EnumerateArray().Select(e => e.GetProperty("what").GetString())));
            }
        }

        output.WriteLine($"{failedOver} VMs restarted on the surviving hosts from their checkpoints, under epoch 2; {lost} lost");
        output.WriteLine($"every VM's whole output (its checkpoint's console, then its new host's) equals a run alone: {(wrong == 0 ? "yes" : $"NO ({wrong})")}");
        return wrong == 0 && lost == 0 && failedOver == onVictim.Length ? 0 : 1;
    }
}
