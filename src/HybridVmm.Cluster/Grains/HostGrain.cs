using HybridVmm.Cluster.Hosting;
using HybridVmm.Cluster.Placement;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Orleans;

namespace HybridVmm.Cluster.Grains;

/// <summary>
/// Reentrant: the host's state is its hypervisor, which serialises every operation at its round barrier; a status
/// query must not wait behind a restore.
/// </summary>
[HostPlacement, Reentrant]
public sealed class HostGrain(IHostAgent agent, LocalVms local, ClusterHostOptions options, IGrainFactory grains, ILogger<HostGrain> logger) : Grain, IHostGrain
{
    public async Task<HostStatus> StatusAsync()
    {
        (long used, HostVm[] vms) = await agent.ListAsync(CancellationToken.None);
        return new HostStatus(this.GetPrimaryKeyString(), options.Name, agent.Capacity, used, vms, agent.MigrationEndpoint);
    }

    public Task<ClusterProblem?> MigrateOutAsync(string name, long epoch, string targetAddress, string targetEndpoint)
    {
        if (!local.TryGet(name, out LocalVms.LocalVm vm) || vm.Epoch != epoch || vm.AwaitingResume)
        {
            return Task.FromResult<ClusterProblem?>(new ClusterProblem(409, $"this host does not run epoch {epoch} of '{name}'"));
        }

        // The migration runs outside the grain's turn (it takes seconds, and the guest runs meanwhile); the VM's grain
        // hears the end. Its reports go on under the current epoch until then, so its lease holds.
        _ = Task.Run(() => MigrateOutAsync(vm, targetEndpoint));
        return Task.FromResult<ClusterProblem?>(null);
    }

    private async Task MigrateOutAsync(LocalVms.LocalVm vm, string targetEndpoint)
    {
        string name = vm.Spec.Name;
        (ClusterProblem? problem, MigrationOutcome? outcome) = await MigrateAfterCheckpointAsync(vm, targetEndpoint);
        if (outcome is not null)
        {
            local.Remove(name); // it left: nothing here reports for it any more
        }

        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await grains.GetGrain<IVmGrain>(name).MigrationEndedAsync(vm.Epoch, outcome, problem?.Detail, vm.ConsolePrefix);
                return;
            }
            catch (Exception e) when (attempt < 10)
            {
                logger.LogWarning("VM {Name}: cannot tell its grain how the migration ended (attempt {Attempt}): {Reason}", name, attempt, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1));
            }
            catch (Exception e)
            {
                logger.LogError("VM {Name}: its grain never heard how the migration ended: {Reason}", name, e.Message);
                return;
            }
        }
    }

    /// <summary>
    /// Migrates the VM once no checkpoint of it is being written: a checkpoint holds the VM as it was captured until its
    /// file is written (the host refuses to move it meanwhile, 409), so the migration waits for it and asks again, as a
    /// stop does (<see cref="ProtectedVmWatch.StopAsync"/>). A refusal with no checkpoint under way stands.
    /// </summary>
    private async Task<(ClusterProblem? Problem, MigrationOutcome? Outcome)> MigrateAfterCheckpointAsync(LocalVms.LocalVm vm, string targetEndpoint)
    {
        for (int attempt = 1; ; attempt++)
        {
            Task checkpoint = vm.Checkpointing;
            await checkpoint.ContinueWith(_ => { }, TaskScheduler.Default);
            (ClusterProblem? problem, MigrationOutcome? outcome) = await agent.MigrateAsync(vm.Spec.Name, targetEndpoint, CancellationToken.None);
            // Another checkpoint began meanwhile (and may have ended already): the refusal may be its doing.
            bool checkpointed = vm.Checkpointing != checkpoint || !vm.Checkpointing.IsCompleted;
            if (outcome is not null || problem is not { Status: 409 } || !checkpointed || attempt == 10)
            {
                return (problem, outcome);
            }

            logger.LogInformation("VM {Name}: its migration waits for the checkpoint being written", vm.Spec.Name);
        }
    }

    public async Task<ClusterProblem?> AdoptAsync(VmSpec spec, long epoch, byte[] consolePrefix, long instructions)
    {
        local.Add(spec, epoch, consolePrefix, instructions, options.Lease);
        ClusterProblem? refused = await agent.StartAsync(spec.Name, CancellationToken.None);
        if (refused is not null)
        {
            local.Remove(spec.Name);
        }

        return refused;
    }

    public Task DiscardArrivalAsync(string name) => agent.DiscardArrivalAsync(name, CancellationToken.None);

    public async Task<ClusterProblem?> CreateAsync(VmSpec spec, long epoch, bool start)
    {
        ClusterProblem? problem = await agent.CreateAsync(spec, start, CancellationToken.None);
        if (problem is null)
        {
            // Only once the VM exists: the watch forgets a local VM its hypervisor does not have.
            local.Add(spec, epoch, [], 0, options.Lease);
        }

        return problem;
    }

    public async Task<ClusterProblem?> RestoreAsync(VmSpec spec, CheckpointInfo checkpoint, long epoch)
    {
        byte[] prefix;
        try
        {
            prefix = File.Exists(checkpoint.ConsolePath) ? await File.ReadAllBytesAsync(checkpoint.ConsolePath) : [];
        }
        catch (IOException e)
        {
            return new ClusterProblem(503, $"cannot read checkpoint console '{checkpoint.ConsolePath}': {e.Message}");
        }

        if (await agent.RestoreAsync(spec.Name, checkpoint.SnapshotPath, spec.MaxInstructions, CancellationToken.None) is { } refused)
        {
            return refused;
        }

        // Known here from now on, but not running: only ResumeAsync with this epoch starts it.
        local.Add(spec, epoch, prefix, checkpoint.Instructions, options.Lease);
        local.TryGet(spec.Name, out LocalVms.LocalVm vm);
        vm.AwaitingResume = true;
        logger.LogInformation("VM {Name} restored from {Checkpoint} (epoch {Epoch}), waiting for its grain to confirm the epoch", spec.Name,
            checkpoint.SnapshotPath, epoch);
        return null;
    }

    public async Task<ClusterProblem?> ResumeAsync(string name, long epoch)
    {
        if (!local.TryGet(name, out LocalVms.LocalVm vm) || vm.Epoch != epoch)
        {
            return new ClusterProblem(409, $"this host does not hold epoch {epoch} of '{name}'");
        }

        vm.AwaitingResume = false;
        return await agent.StartAsync(name, CancellationToken.None);
    }

    public Task<ClusterProblem?> StartAsync(string name) => agent.StartAsync(name, CancellationToken.None);

    public Task<ClusterProblem?> StopAsync(string name) => local.TryGet(name, out LocalVms.LocalVm vm)
        ? ProtectedVmWatch.StopAsync(agent, vm, CancellationToken.None) // after a checkpoint being written, not refused by it
        : agent.StopAsync(name, CancellationToken.None);
}
