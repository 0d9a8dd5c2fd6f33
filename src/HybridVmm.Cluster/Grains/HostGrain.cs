using HybridVmm.Cluster.Hosting;
using HybridVmm.Cluster.Placement;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cluster.Grains;

[HostPlacement]
public sealed class HostGrain(IHostAgent agent, LocalVms local, ClusterHostOptions options, ILogger<HostGrain> logger) : Grain, IHostGrain
{
    public async Task<HostStatus> StatusAsync()
    {
        (long used, HostVm[] vms) = await agent.ListAsync(CancellationToken.None);
        return new HostStatus(this.GetPrimaryKeyString(), options.Name, agent.Capacity, used, vms);
    }

    public async Task<ClusterProblem?> CreateAsync(VmSpec spec, long epoch, bool start)
    {
        local.Add(spec, epoch, [], 0);
        ClusterProblem? problem = await agent.CreateAsync(spec, start, CancellationToken.None);
        if (problem is not null)
        {
            local.Remove(spec.Name);
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

        // The fence: the restored VM stays stopped unless its grain still says this epoch is the current one.
        if (!await GrainFactory.GetGrain<IVmGrain>(spec.Name).IsCurrentAsync(epoch))
        {
            await agent.StopAsync(spec.Name, CancellationToken.None);
            return new ClusterProblem(409, $"epoch {epoch} of '{spec.Name}' was fenced off before it resumed");
        }

        local.Add(spec, epoch, prefix, checkpoint.Instructions);
        ClusterProblem? problem = await agent.StartAsync(spec.Name, CancellationToken.None);
        if (problem is null)
        {
            logger.LogInformation("VM {Name} restored from {Checkpoint} (epoch {Epoch})", spec.Name, checkpoint.SnapshotPath, epoch);
        }

        return problem;
    }

    public Task<ClusterProblem?> StartAsync(string name) => agent.StartAsync(name, CancellationToken.None);

    public Task<ClusterProblem?> StopAsync(string name) => agent.StopAsync(name, CancellationToken.None);
}
