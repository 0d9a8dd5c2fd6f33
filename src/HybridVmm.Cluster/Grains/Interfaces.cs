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

    /// <summary>
    /// Starts live-migrating the VM, which this host runs under the current epoch, to the host at
    /// <paramref name="targetAddress"/> (its migration listener <paramref name="targetEndpoint"/>), and returns at once;
    /// the VM's grain hears how it ended through <see cref="IVmGrain.MigrationEndedAsync"/>.
    /// </summary>
    Task<ClusterProblem?> MigrateOutAsync(string name, long epoch, string targetAddress, string targetEndpoint);

    /// <summary>Takes a VM that arrived by migration (held, not started) as its own under <paramref name="epoch"/>, and starts it.</summary>
    Task<ClusterProblem?> AdoptAsync(VmSpec spec, long epoch, byte[] consolePrefix, long instructions);

    /// <summary>Deletes a VM that arrived by migration and was never adopted.</summary>
    Task DiscardArrivalAsync(string name);
}

/// <summary>
/// A VM's cluster identity, keyed by its name: desired state, placement, epoch, last checkpoint and history,
/// persisted in Redis. It is the VM's control plane; the VM itself runs on its host's scheduler thread.
/// </summary>
public interface IVmGrain : IGrainWithStringKey
{
    /// <summary>Creates the VM on a host the placement policy chooses, or on the host named <paramref name="onHost"/>.</summary>
    Task<ClusterResult<ClusterVm>> CreateAsync(VmSpec spec, bool start, string? onHost = null);

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

    /// <summary>
    /// Live-migrates the running VM to the host named <paramref name="toHost"/> (or one the placement policy chooses)
    /// and returns once it has begun; <see cref="ClusterVm.LastMigration"/> says how it ends. <paramref name="reason"/>
    /// goes in the history (a user, or the balancer).
    /// </summary>
    Task<ClusterResult<ClusterVm>> MigrateAsync(string? toHost, string reason);

    /// <summary>The source host says how the migration of <paramref name="epoch"/> ended (the console prefix and outcome on success).</summary>
    Task MigrationEndedAsync(long epoch, MigrationOutcome? outcome, string? failure, byte[] consolePrefix);

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
