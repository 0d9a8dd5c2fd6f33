using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Api;

/// <summary>The cluster's checkpoint of a protected VM: the snapshot and the console output, read at one barrier.</summary>
public sealed partial class VmManager
{
    private readonly HashSet<string> _leasePaused = new(StringComparer.Ordinal);

    /// <summary>
    /// Called by the scheduler at every round barrier once the cluster enforces leases: a running VM whose lease has
    /// expired pauses here, before another round, exactly as an API pause does.
    /// </summary>
    public void EnforceLeases(Func<string, bool> leaseExpired) => system.Kernel.Scheduler.RoundCompleted += () =>
    {
        foreach (ManagedVm m in All())
        {
            if (m.Vm.State == PartitionState.Running && leaseExpired(m.Vm.Name))
            {
                system.Root.Pause(m.Vm);
                _leasePaused.Add(m.Vm.Name);
                logger.LogWarning("VM {Name} paused: its cluster lease expired (this host could not reach the control plane in time)", m.Vm.Name);
            }
        }
    };

    /// <summary>Runs on a VM the lease paused (and nothing else: a VM the user paused stays paused).</summary>
    public Task ResumeLeasedAsync(string name, CancellationToken cancellationToken) => AtBarrierAsync<bool>(() =>
    {
        if (_leasePaused.Remove(name) && Find(name) is { } m && m.Vm.State == PartitionState.Paused)
        {
            system.Root.Start(m.Vm);
            logger.LogInformation("VM {Name} runs on: its cluster lease is renewed", name);
        }

        return true;
    }, cancellationToken);

    /// <summary>
    /// Captures a running VM at a barrier together with everything it has written to its console, so that a VM
    /// restored from the snapshot continues exactly after those bytes. Writes the snapshot outside the barrier.
    /// </summary>
    public async Task<ApiOutcome<(long Instructions, byte[] Console)>> CheckpointAsync(string name, string path, CancellationToken cancellationToken)
    {
        ApiOutcome<(VmSnapshot Snapshot, byte[] Console)> captured = await AtBarrierAsync<(VmSnapshot, byte[])>(() =>
        {
            if (Find(name) is not { } m)
            {
                return ApiProblem.UnknownVm(name);
            }

            VirtualMachine vm = m.Vm;
            if (vm.State != PartitionState.Running)
            {
                return ApiProblem.Conflict($"'{name}' is not running");
            }

            (byte[] bytes, long total) = console.Read(vm);
            if (total > bytes.Length)
            {
                return ApiProblem.Conflict($"'{name}' has written more than {console.Capacity} bytes to its console: its whole output no longer fits a checkpoint");
            }

            system.Root.Pause(vm);
            VmSnapshot snapshot = system.Root.CaptureSnapshot(vm);
            system.Root.Start(vm);
            return (snapshot, bytes);
        }, cancellationToken).ConfigureAwait(false);
        if (captured.Problem is { } problem)
        {
            return problem;
        }

        try
        {
            // Written under a temporary name and renamed, so a host that dies mid-write leaves no torn checkpoint.
            string partial = path + ".partial";
            SnapshotFile.Write(partial, captured.Value.Snapshot);
            File.Move(partial, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new ApiProblem(503, "Cannot write the checkpoint", $"cannot write checkpoint '{path}': {e.Message}");
        }

        return (captured.Value.Snapshot.Cpu.InstructionsRetired, captured.Value.Console);
    }
}
