using Orleans;

namespace HybridVmm.Cluster.Hosting;

/// <summary>
/// What the cluster asks of the hybrid host it runs in. The serve command implements it over its management API's
/// VM manager, so every operation runs at a round barrier on the scheduler's thread, exactly as an API request does.
/// </summary>
public interface IHostAgent
{
    HostCapacity Capacity { get; }

    /// <summary>Where this host takes live migrations (serve --migration-listen), once bound; null: it takes none.</summary>
    string? MigrationEndpoint { get; }

    /// <summary>
    /// Live-migrates a running VM to the host listening at <paramref name="endpoint"/>. On success the VM has left this
    /// host; on failure it runs on here.
    /// </summary>
    Task<(ClusterProblem? Problem, MigrationOutcome? Outcome)> MigrateAsync(string name, string endpoint, CancellationToken cancellationToken);

    /// <summary>Deletes a VM that arrived by migration and was never started (its hand-over was not confirmed); nothing for any other VM.</summary>
    Task DiscardArrivalAsync(string name, CancellationToken cancellationToken);

    Task<(long MemoryUsedBytes, HostVm[] Vms)> ListAsync(CancellationToken cancellationToken);

    Task<ClusterProblem?> CreateAsync(VmSpec spec, bool start, CancellationToken cancellationToken);

    /// <summary>Creates a VM from a snapshot file, not started.</summary>
    Task<ClusterProblem?> RestoreAsync(string name, string snapshotPath, long maxInstructions, CancellationToken cancellationToken);

    Task<ClusterProblem?> StartAsync(string name, CancellationToken cancellationToken);

    Task<ClusterProblem?> StopAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// From now on, at every round barrier, pauses each running VM for which <paramref name="leaseExpired"/> says
    /// true, before it executes another round (the lease of <see cref="LocalVms"/>).
    /// </summary>
    void EnforceLeases(Func<string, bool> leaseExpired);

    /// <summary>Runs a VM on that the lease paused, now that its lease is renewed; nothing for any other VM.</summary>
    Task ResumeLeasedAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// Writes a checkpoint of a running VM (it runs on) and returns the instructions it had retired and the console
    /// output it had written on this host, both read at the same barrier as the capture.
    /// </summary>
    Task<(ClusterProblem? Problem, long Instructions, byte[] Console)> CheckpointAsync(string name, string snapshotPath, CancellationToken cancellationToken);
}
