using System.Collections.Concurrent;
using Orleans;

namespace HybridVmm.Cluster.Hosting;

/// <summary>
/// The cluster VMs this host runs, with the epoch it runs each under. A VM restored from a checkpoint also keeps the
/// console output it had written before that checkpoint, so its whole output is that prefix and what it writes here.
/// </summary>
public sealed class LocalVms
{
    private readonly ConcurrentDictionary<string, LocalVm> _vms = new(StringComparer.Ordinal);

    public sealed class LocalVm(VmSpec spec, long epoch, byte[] consolePrefix, long checkpointInstructions)
    {
        public VmSpec Spec => spec;

        public long Epoch => epoch;

        public byte[] ConsolePrefix => consolePrefix;

        /// <summary>Instructions retired at the last checkpoint (a restored VM starts from its checkpoint's count).</summary>
        public long LastCheckpointInstructions { get; set; } = checkpointInstructions;

        public int Sequence { get; set; }

        /// <summary>Restored from a checkpoint, and not yet confirmed by its grain: not started, not reported.</summary>
        public bool AwaitingResume { get; set; }

        /// <summary>
        /// Until when (Environment.TickCount64) the VM may run: each report its grain accepts renews it. A host that
        /// was frozen or cut off finds it expired and pauses the VM at its next round barrier, before the cluster can
        /// have declared it dead and restarted the VM elsewhere.
        /// </summary>
        public long LeaseUntil { get; set; } = long.MaxValue;

        /// <summary>The checkpoint being written and recorded, if any: one at a time.</summary>
        public Task Checkpointing { get; set; } = Task.CompletedTask;

        /// <summary>The last report to its grain failed (said once in the log until one succeeds).</summary>
        public bool ReportFailing { get; set; }
    }

    public void Add(VmSpec spec, long epoch, byte[] consolePrefix, long checkpointInstructions, TimeSpan lease) =>
        _vms[spec.Name] = new LocalVm(spec, epoch, consolePrefix, checkpointInstructions)
        {
            LeaseUntil = Environment.TickCount64 + (long)lease.TotalMilliseconds,
        };

    /// <summary>Whether the VM is a cluster VM of this host whose lease has run out (the scheduler's question at a barrier).</summary>
    public bool LeaseExpired(string name) => _vms.TryGetValue(name, out LocalVm? vm) && Environment.TickCount64 > vm.LeaseUntil;

    public bool TryGet(string name, out LocalVm vm) => _vms.TryGetValue(name, out vm!);

    /// <summary>Forgets a VM; false if it was already forgotten (another path has fenced or removed it).</summary>
    public bool Remove(string name) => _vms.TryRemove(name, out _);

    public LocalVm[] All() => _vms.Values.ToArray();

    private readonly ConcurrentBag<Task> _fences = [];

    /// <summary>A fence under way (a copy being stopped); a host that is about to end waits for them, so each says what it stopped.</summary>
    public void AddFence(Task fence) => _fences.Add(fence.ContinueWith(_ => { }, TaskScheduler.Default));

    public Task[] Fences() => _fences.ToArray();
}
