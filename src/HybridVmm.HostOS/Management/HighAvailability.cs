using HybridVmm.HostOS.Encapsulation;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

using HybridVmm.HostOS.Vm;

namespace HybridVmm.HostOS.Management;

/// <summary>How the high-availability policy protects a VM.</summary>
public sealed record HighAvailabilityPolicy
{
    /// <summary>Take an in-memory checkpoint each time the VM has run this many more instructions.</summary>
    public long CheckpointEveryInstructions { get; init; } = 2_000_000;

    /// <summary>Give up on a VM that keeps failing after this many restarts.</summary>
    public int MaxRestarts { get; init; } = 3;
}

/// <summary>What happened to one protected VM.</summary>
public sealed record HighAvailabilityRecord(string Name, int Checkpoints, int Restarts, StopReason FinalOutcome, bool GaveUp);

/// <summary>
/// High availability: protected VMs are checkpointed periodically (a snapshot in memory, taken at a pause
/// on the scheduler's thread while the other guests go on). When a protected VM crashes (a guest fault or
/// triple fault) or its worker's device driver fails, the policy deletes its partition and restarts it from
/// the last checkpoint; the other guests keep running. Output the guest produced after that checkpoint is
/// produced again: an external effect cannot be rolled back, as with any checkpoint-restart scheme.
/// </summary>
public sealed class HighAvailabilityManager
{
    private readonly HybridSystem _system;
    private readonly HighAvailabilityPolicy _policy;
    private readonly Dictionary<string, Protected> _protected = new();

    public HighAvailabilityManager(HybridSystem system, HighAvailabilityPolicy policy)
    {
        _system = system;
        _policy = policy;
        system.Root.BreakpointReached += OnBreakpoint;
    }

    /// <summary>The VM currently running under this name (a restarted VM replaces the failed one).</summary>
    public VirtualMachine Current(string name) => _protected[name].Vm;

    public void Protect(VirtualMachine vm)
    {
        _protected[vm.Name] = new Protected(vm);
        _system.Root.PauseAtInstruction(vm, _system.Root.BootInstructionsRetired(vm) + 1);
    }

    /// <summary>Runs every VM until all have ended, restarting protected ones that fail.</summary>
    public async Task<IReadOnlyList<HighAvailabilityRecord>> RunAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            await _system.RunUntilIdleAsync(cancellationToken, () => _protected.Values.Any(p => Failed(p.Vm) && !p.GaveUp));
            Protected[] failed = _protected.Values.Where(p => Failed(p.Vm) && !p.GaveUp).ToArray();
            if (failed.Length == 0)
            {
                break;
            }

            foreach (Protected p in failed)
            {
                Restart(p);
            }
        }

        return _protected.Values
            .Select(p => new HighAvailabilityRecord(p.Vm.Name, p.Checkpoints, p.Restarts, p.Vm.Exited.Result.Reason, p.GaveUp))
            .ToList();
    }

    /// <summary>A crash: a guest fault, a worker failure, or a triple fault (a reset the guest did not ask for, which this manager does not reboot).</summary>
    private static bool Failed(VirtualMachine vm) =>
        vm.Exited.IsCompleted && vm.Exited.Result is { Reason: StopReason.GuestFault or StopReason.WorkerFailure } or { Reason: StopReason.Reset, Diagnostic: not null };

    private void OnBreakpoint(PartitionHandle partition)
    {
        Protected? p = _protected.Values.FirstOrDefault(x => x.Vm.Partition == partition);
        if (p is null)
        {
            return;
        }

        // On the scheduler thread, at an instruction boundary with nothing in flight for this VM.
        // The checkpoint never leaves this process and the VM's disk runs on after it: its identity is not hashed.
        p.Checkpoint = _system.Root.CaptureSnapshot(p.Vm, identifyDisk: false);
        p.Checkpoints++;
        Record(p.Vm, $"ha: checkpoint {p.Checkpoints} at instruction {p.Checkpoint.Cpu.InstructionsRetired}");
        _system.Root.PauseAtInstruction(p.Vm, p.Checkpoint.Cpu.InstructionsRetired + _policy.CheckpointEveryInstructions);
        _system.Root.Start(p.Vm);
    }

    private void Restart(Protected p)
    {
        PartitionExit exit = p.Vm.Exited.Result;
        Record(p.Vm, $"ha: detected {(exit.Reason == StopReason.WorkerFailure ? "worker failure" : "guest crash")}: {exit.Diagnostic?.Split('\n')[0]}");
        if (p.Restarts >= _policy.MaxRestarts || p.Checkpoint is null)
        {
            p.GaveUp = true;
            Record(p.Vm, $"ha: giving up after {p.Restarts} restart(s)");
            return;
        }

        p.Restarts++;
        _system.Root.Delete(p.Vm);
        VirtualMachine restarted = _system.Root.RestoreVm(p.Checkpoint, out VmCreationError? error, diskImage: p.Vm.Configuration.DiskImage)
            ?? throw new InvalidOperationException($"a checkpoint taken by this process was refused: {error!.Message}");
        p.Vm = restarted;
        Record(restarted, $"ha: restart {p.Restarts} from checkpoint at instruction {p.Checkpoint.Cpu.InstructionsRetired}");
        _system.Root.PauseAtInstruction(restarted, p.Checkpoint.Cpu.InstructionsRetired + _policy.CheckpointEveryInstructions);
        _system.Root.Start(restarted);
    }

    private void Record(VirtualMachine vm, string what) =>
        _system.Trace.Record(_system.Kernel.Clock.Ticks, vm.Partition.Id, -1, TraceKind.Lifecycle, what);

    private sealed class Protected(VirtualMachine vm)
    {
        public VirtualMachine Vm { get; set; } = vm;

        public VmSnapshot? Checkpoint { get; set; }

        public int Checkpoints { get; set; }

        public int Restarts { get; set; }

        public bool GaveUp { get; set; }
    }
}
