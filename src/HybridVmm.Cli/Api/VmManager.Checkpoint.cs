using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Api;

/// <summary>The cluster's checkpoint of a protected VM: the snapshot and the console output, read at one barrier.</summary>
public sealed partial class VmManager
{
    private readonly HashSet<string> _leasePaused = new(StringComparer.Ordinal);

    private Func<string, bool> _leaseExpired = _ => false;

    /// <summary>
    /// Called by the scheduler at every round barrier once the cluster enforces leases: a running VM whose lease has
    /// expired pauses here, before another round, exactly as an API pause does.
    /// </summary>
    public void EnforceLeases(Func<string, bool> leaseExpired)
    {
        _leaseExpired = leaseExpired;
        system.Kernel.Scheduler.RoundCompleted += () =>
        {
            foreach (ManagedVm m in All())
            {
                if (m.Vm.State == PartitionState.Running && leaseExpired(m.Vm.Name))
                {
                    system.Root.Pause(m.Vm);
                    _leasePaused.Add(m.Vm.Name);
                    logger.LogWarning("VM {Name} paused at {Instructions} instructions: its cluster lease expired (this host could not reach the control plane in time)",
                        m.Vm.Name, m.Vm.Statistics.InstructionsRetired);
                }
            }
        };
    }

    /// <summary>
    /// Runs on a VM the lease paused (and nothing else: a VM the user paused stays paused), if its lease is still good
    /// at this barrier: a renewal that took longer than the lease (the host froze meanwhile) renews nothing.
    /// </summary>
    public Task ResumeLeasedAsync(string name, CancellationToken cancellationToken) => AtBarrierAsync<bool>(() =>
    {
        if (!_leaseExpired(name) && _leasePaused.Remove(name) && Find(name) is { } m && m.Vm.State == PartitionState.Paused)
        {
            if (m.Busy is not null)
            {
                m.ResumeWhenSaved = true; // the save resumes it once its snapshot is written
                return true;
            }

            system.Root.Start(m.Vm);
            logger.LogInformation("VM {Name} runs on: its cluster lease is renewed", name);
        }

        return true;
    }, cancellationToken);

    /// <summary>
    /// Captures a running VM at a barrier together with everything it has written to its console, so that a VM
    /// restored from the snapshot continues exactly after those bytes. The VM stays paused while its pages are
    /// written from its RAM into the file, outside the barrier (<see cref="WritePausedAsync"/>), then runs on.
    /// </summary>
    public async Task<ApiOutcome<(long Instructions, byte[] Console)>> CheckpointAsync(string name, string path, CancellationToken cancellationToken)
    {
        ApiOutcome<(long BootInstructions, (byte[] Console, long Instructions) AtCapture)> written = await WritePausedAsync(name, vm =>
        {
            if (vm.State != PartitionState.Running)
            {
                return ApiProblem.Conflict($"'{name}' is not running");
            }

            (byte[] bytes, long total) = console.Read(vm);
            // Every vCPU's instructions, as the VM's statistics (and so the cluster's progress reports) count them: the
            // boot vCPU's alone would put a VM of several vCPUs always N instructions past its last checkpoint.
            return total > bytes.Length
                ? ApiProblem.Conflict($"'{name}' has written more than {console.Capacity} bytes to its console: its whole output no longer fits a checkpoint")
                : new ApiOutcome<(byte[], long)>((bytes, vm.Statistics.InstructionsRetired), null);
        }, snapshot =>
        {
            // Written under a temporary name and renamed, so a host that dies mid-write leaves no torn checkpoint.
            string partial = path + ".partial";
            SnapshotFile.Write(partial, snapshot);
            File.Move(partial, path, overwrite: true);
        }, e => new ApiProblem(503, "Cannot write the checkpoint", $"cannot write checkpoint '{path}': {e.Message}"), cancellationToken).ConfigureAwait(false);
        return written.Problem is { } problem ? problem : (written.Value.AtCapture.Instructions, written.Value.AtCapture.Console);
    }
}
