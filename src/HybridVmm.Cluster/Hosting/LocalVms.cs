using System.Collections.Concurrent;

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
    }

    public void Add(VmSpec spec, long epoch, byte[] consolePrefix, long checkpointInstructions) =>
        _vms[spec.Name] = new LocalVm(spec, epoch, consolePrefix, checkpointInstructions);

    public bool TryGet(string name, out LocalVm vm) => _vms.TryGetValue(name, out vm!);

    public void Remove(string name) => _vms.TryRemove(name, out _);

    public LocalVm[] All() => _vms.Values.ToArray();
}
