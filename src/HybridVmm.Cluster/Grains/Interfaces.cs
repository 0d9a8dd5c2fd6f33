using Orleans;
using Orleans.Concurrency;

namespace HybridVmm.Cluster.Grains;

/// <summary>
/// One hybrid host of the cluster, keyed by its silo address and always activated on that silo
/// (<see cref="Placement.HostPlacementAttribute"/>). It is how the control plane reaches a host: each call is
/// handed to the host's management API, which performs it at a round barrier on the scheduler's thread. The
/// guest never executes inside a grain turn.
/// </summary>
public interface IHostGrain : IGrainWithStringKey
{
    Task<HostStatus> StatusAsync();

    Task<ClusterProblem?> CreateAsync(VmSpec spec, long epoch, bool start);

    /// <summary>Restores a VM from a checkpoint, not started: its grain checks the epoch once more, then calls <see cref="ResumeAsync"/>.</summary>
    Task<ClusterProblem?> RestoreAsync(VmSpec spec, CheckpointInfo checkpoint, long epoch);

    /// <summary>Starts a restored VM under <paramref name="epoch"/>, the epoch its grain has just confirmed.</summary>
    Task<ClusterProblem?> ResumeAsync(string name, long epoch);

    Task<ClusterProblem?> StartAsync(string name);

    Task<ClusterProblem?> StopAsync(string name);
}

/// <summary>
/// A VM's cluster identity, keyed by its name: desired state, placement, epoch, last checkpoint and history,
/// persisted in Redis. It is the VM's control plane; the VM itself runs on its host's scheduler thread.
/// </summary>
public interface IVmGrain : IGrainWithStringKey
{
    Task<ClusterResult<ClusterVm>> CreateAsync(VmSpec spec, bool start);

    Task<ClusterResult<ClusterVm>> StartAsync();

    Task<ClusterResult<ClusterVm>> StopAsync();

    Task<ClusterResult<ClusterVm>> GetAsync();

    /// <summary>
    /// The host running epoch <paramref name="epoch"/> reports its progress; false: that epoch is fenced off, stop. It
    /// interleaves with every other call, so that a report never waits behind a write to Redis (a slow or absent
    /// control store must not cost a host its leases); it reads and changes only the record in memory.
    /// </summary>
    [AlwaysInterleave]
    Task<bool> HeartbeatAsync(long epoch, string host, long instructions, string state, string? exitReason);

    /// <summary>
    /// Whether epoch <paramref name="epoch"/> on <paramref name="host"/> is still the VM's, by the record in Redis rather
    /// than this activation's memory: a host asks before it runs on a VM whose lease ran out (the activation that
    /// answers may be a stale one, on a host that was itself cut off). It fails while Redis cannot be read.
    /// </summary>
    Task<bool> ConfirmEpochAsync(long epoch, string host);

    /// <summary>A checkpoint was written; false: the epoch is fenced off and the checkpoint is not taken.</summary>
    Task<bool> CheckpointTakenAsync(CheckpointInfo checkpoint);

    /// <summary>The host <paramref name="host"/> was declared dead: a protected VM placed there restarts elsewhere.</summary>
    Task<FailoverReport?> HostDiedAsync(string host, DateTime detectedAt);
}

/// <summary>The names of every cluster VM (one grain, key "all"), and the fan-out of a host's death to them.</summary>
public interface IVmDirectoryGrain : IGrainWithStringKey
{
    Task AddAsync(string name);

    Task<string[]> ListAsync();

    Task HostDiedAsync(string host, DateTime detectedAt);
}
