using System.Diagnostics;
using System.Text;
using System.Text.Json;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Cluster;

/// <summary>
/// Issue 13's "killing Redis for a while": the control store crashes (SIGKILL) under three hosts that run VMs, and
/// comes back on the same port with the same data (it logs every write to an append-only file, synced before it
/// answers, as a control store must: a restart that lost acknowledged writes could move epochs back). The hosts keep
/// their VMs running and say that the cluster is degraded; once Redis is back the cluster works again.
/// </summary>
[NonParallelizable]
public class ClusterRedisOutageTests : ClusterProcessTest
{
    /// <summary>Far more than the test lets run (18 G instructions, 63,000 bytes of output): the VMs are stopped through the cluster.</summary>
    private const int Ticks = 9000;

    /// <summary>How long Redis stays down once every host has said so: three leases, and more than the time in which a dead host is found.</summary>
    private static readonly TimeSpan Outage = TimeSpan.FromSeconds(6);

    /// <summary>How long a host may take to say that Redis went or came back (it asks every 250 ms).</summary>
    private static readonly TimeSpan SayItWithin = TimeSpan.FromSeconds(30);

    [Test]
    public void HostsKeepTheirVmsRunningWhileRedisIsDownSayTheClusterIsDegradedAndRecoverWhenItReturns()
    {
        string guest = TickingGuest(Ticks);
        string[] hosts = ["h1", "h2", "h3"];
        string redisData = Path.Combine(Dir, "redis");
        Directory.CreateDirectory(redisData);
        // A lease of 2 s (probes of 2 s, 2 missed): a loaded machine's hiccups do not pause VMs on their own.
        StartCluster(hosts, redisData, probeTimeout: 2, missedProbes: 2);
        string[] names = ["vm1", "vm2", "vm3"];
        foreach (string name in names)
        {
            Cluster("vm", "create", name, "--image", guest, "--memory", "4M", "--protected", "--checkpoint-every", CheckpointEvery.ToString(), "--start");
        }

        Dictionary<string, string> placed = Vms().ToDictionary(v => v.GetProperty("name").GetString()!, v => v.GetProperty("hostName").GetString()!);
        Assert.That(placed.Values, Is.EquivalentTo(hosts), "least-loaded placement puts one VM on each host");
        WaitFor(() => names.All(n => File.Exists(Path.Combine(Checkpoints, $"{n}.e1.1.console"))), "every VM to have a checkpoint", poll: 100);
        Dictionary<string, long> checkpointBefore = Vms().ToDictionary(v => v.GetProperty("name").GetString()!,
            v => v.GetProperty("lastCheckpoint").GetProperty("instructions").GetInt64());

        Dictionary<string, int> marks = hosts.ToDictionary(h => h, h => Host(h).Stderr.Length);
        Redis!.Kill();
        var down = Stopwatch.StartNew();
        WaitFor(() => hosts.All(h => Since(h, marks).Contains("cluster degraded: the control store", StringComparison.Ordinal)),
            "every host to say that the cluster is degraded", poll: 100, within: SayItWithin);
        TestContext.Out.WriteLine($"every host said the cluster is degraded {down.Elapsed.TotalSeconds:0.0} s after Redis was killed");

        // The VMs run on, each on its host, as each host's own API says, over several leases.
        Dictionary<string, long> first = Counts(placed);
        Thread.Sleep(Outage);
        Dictionary<string, long> second = Counts(placed);
        foreach (string name in names)
        {
            Assert.That(second[name], Is.GreaterThan(first[name]), $"{name} on {placed[name]} ran on while Redis was down");
            TestContext.Out.WriteLine($"{name} on {placed[name]}: {first[name]} -> {second[name]} instructions while Redis was down");
        }

        foreach (string host in hosts)
        {
            Assert.That(Since(host, marks), Does.Not.Contain("its cluster lease expired"), $"{host} paused a VM while Redis was down");
        }

        Redis.Restart();
        var back = Stopwatch.StartNew();
        WaitFor(() => hosts.All(h => Since(h, marks).Contains("cluster recovered: the control store", StringComparison.Ordinal)),
            "every host to say that the cluster recovered", poll: 100, within: SayItWithin);
        // The cluster answers again, with its three hosts, and each VM runs once, where it ran, under its first epoch;
        // checkpoints go on.
        JsonElement[] vms = WaitFor(() =>
        {
            CliProcess.Result status = TryCluster("cluster", "status");
            if (status.ExitCode != 0)
            {
                return null;
            }

            JsonElement json = JsonDocument.Parse(status.Text).RootElement.Clone();
            JsonElement[] all = json.GetProperty("vms").EnumerateArray().ToArray();
            // (A VM is paused for a moment while its checkpoint is written: its state says so if it is reported then.)
            return json.GetProperty("hosts").GetArrayLength() == hosts.Length
                && all.All(v => v.GetProperty("lastCheckpoint").GetProperty("instructions").GetInt64() > checkpointBefore[v.GetProperty("name").GetString()!])
                && all.All(v => v.GetProperty("state").GetString() == "running")
                ? all : null;
        }, "cluster status to answer with every host, every VM running and a checkpoint of each after the outage");
        TestContext.Out.WriteLine($"cluster status answered with new checkpoints {back.Elapsed.TotalSeconds:0.0} s after Redis came back");
        Dictionary<string, long> third = Counts(placed);
        foreach (JsonElement vm in vms)
        {
            string name = vm.GetProperty("name").GetString()!;
            Assert.That((vm.GetProperty("hostName").GetString(), vm.GetProperty("epoch").GetInt64()), Is.EqualTo((placed[name], 1L)),
                $"{name} after the outage: where it ran before, under its first epoch");
            Assert.That(hosts.Where(h => HostVms(h).ContainsKey(name)), Is.EqualTo(new[] { placed[name] }), $"the hosts that have {name}");
            Assert.That(third[name], Is.GreaterThan(second[name]), $"{name} runs after the outage");
        }

        // Determinism across the outage: the VMs, stopped through the cluster, wrote what a run alone writes. The one
        // that ran furthest is compared whole with a run alone of as many instructions; the others' outputs are its
        // beginnings (one run alone, not three, for the machine's sake).
        Task.WaitAll(names.Select(name => Task.Run(() => Cluster("vm", "stop", name))).ToArray());
        var stopped = names.ToDictionary(n => n, n => HostVms(placed[n])[n]);
        Assert.That(stopped.Values.Select(v => v.State), Is.All.EqualTo("stopped"));
        string furthest = stopped.MaxBy(v => v.Value.Instructions).Key;
        CliProcess.Result alone = CliProcess.Run("run", guest, "--max-instructions", stopped[furthest].Instructions.ToString());
        foreach (string name in names)
        {
            string output = Encoding.Latin1.GetString(ConsoleOf(placed[name], name));
            if (name == furthest)
            {
                Assert.That(output, Is.EqualTo(alone.Text), $"{name}: its output over {stopped[name].Instructions} instructions, against a run alone of as many");
            }
            else
            {
                Assert.That(alone.Text, Does.StartWith(output), $"{name}: its output over {stopped[name].Instructions} instructions, against a run alone");
            }

            Assert.That(output, Does.Contain("tick "), $"{name} wrote something");
        }
    }

    private string Since(string host, Dictionary<string, int> marks) => Host(host).Stderr[marks[host]..];

    /// <summary>
    /// Each VM's instructions, read through its own host's API; each must be running. A checkpoint pauses a VM for a
    /// moment (several times a second at this checkpoint interval), so a read that finds it paused asks again, for at
    /// most a second; a VM that a lease paused stays paused longer, and the logs are checked for that as well.
    /// </summary>
    private Dictionary<string, long> Counts(Dictionary<string, string> placed) => placed.ToDictionary(p => p.Key, p =>
    {
        (string state, long instructions, string? _) = HostVms(p.Value)[p.Key];
        for (int again = 0; again < 10 && state == "paused"; again++)
        {
            Thread.Sleep(100);
            (state, instructions, _) = HostVms(p.Value)[p.Key];
        }

        Assert.That(state, Is.EqualTo("running"), $"{p.Key} on {p.Value}");
        return instructions;
    });
}
