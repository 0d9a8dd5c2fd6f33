using HybridVmm.Cli.Api;
using HybridVmm.Cluster;
using HybridVmm.Cluster.Hosting;
using HybridVmm.Guests;
using HybridVmm.HostOS;

namespace HybridVmm.Cli.Cluster;

/// <summary>
/// The cluster's hands on this serve host: every operation goes through the management API's <see cref="VmManager"/>,
/// so it runs at a round barrier on the scheduler's thread, as an API request does.
/// </summary>
internal sealed class ServeHostAgent : IHostAgent
{
    private readonly VmManager vms;
    private readonly HybridSystem system;

    public ServeHostAgent(VmManager vms, HybridSystem system, ClusterHostOptions options)
    {
        this.vms = vms;
        this.system = system;
        Capacity = new(options.HostVcpus, system.Kernel.Options.HostMemoryBytes, EmbeddedGuests.Names.Select(n => $"embedded:{n}").ToArray());
        // A VM that arrives by migration waits for its grain to adopt it (docs/cluster.md#live-migration).
        vms.HoldArrivals = true;
    }

    public HostCapacity Capacity { get; }

    public string? MigrationEndpoint => vms.MigrationEndpoint;

    public async Task<(ClusterProblem? Problem, MigrationOutcome? Outcome)> MigrateAsync(string name, string endpoint, CancellationToken cancellationToken)
    {
        ApiOutcome<MigrateVmResult> moved = await vms.MigrateAsync(name, new MigrateVmRequest { To = endpoint }, cancellationToken).ConfigureAwait(false);
        return moved.Problem is { } problem
            ? (Problem(problem), null)
            : (null, new MigrationOutcome(moved.Value!.InstructionsRetired, [.. moved.Value.PagesPerRound], moved.Value.FinalPages, moved.Value.DowntimeMilliseconds));
    }

    public Task DiscardArrivalAsync(string name, CancellationToken cancellationToken) => vms.DiscardArrivalAsync(name, cancellationToken);

    public async Task<(long MemoryUsedBytes, HostVm[] Vms)> ListAsync(CancellationToken cancellationToken)
    {
        ApiOutcome<IReadOnlyList<VmInfo>> list = await vms.ListAsync(cancellationToken).ConfigureAwait(false);
        if (list.Problem is { } problem)
        {
            throw new InvalidOperationException(problem.Detail);
        }

        HostVm[] all = list.Value!.Select(v => new HostVm(v.Name, v.State, v.Statistics.InstructionsRetired, v.MemoryBytes, v.Exit?.Reason, v.Vcpus.Count)).ToArray();
        return (system.HostMemoryUsedBytes, all);
    }

    public async Task<ClusterProblem?> CreateAsync(VmSpec spec, bool start, CancellationToken cancellationToken) =>
        Problem((await vms.CreateAsync(spec.Snapshot is { } snapshot
            ? new CreateVmRequest
            {
                // Its memory and vCPUs are the snapshot's.
                Name = spec.Name,
                Snapshot = snapshot,
                MaxInstructions = spec.MaxInstructions > 0 ? spec.MaxInstructions : null,
                Start = start,
            }
            : new CreateVmRequest
            {
                Name = spec.Name,
                Image = spec.Image,
                Memory = spec.Memory,
                CommandLine = spec.CommandLine,
                MaxInstructions = spec.MaxInstructions,
                Cpus = spec.Vcpus,
                Start = start,
            }, cancellationToken).ConfigureAwait(false)).Problem);

    public async Task<ClusterProblem?> RestoreAsync(string name, string snapshotPath, long maxInstructions, CancellationToken cancellationToken) =>
        Problem((await vms.CreateAsync(new CreateVmRequest
        {
            Name = name,
            Snapshot = snapshotPath,
            MaxInstructions = maxInstructions > 0 ? maxInstructions : null,
        }, cancellationToken).ConfigureAwait(false)).Problem);

    public async Task<ClusterProblem?> StartAsync(string name, CancellationToken cancellationToken) =>
        Problem((await vms.StartAsync(name, cancellationToken).ConfigureAwait(false)).Problem);

    public async Task<ClusterProblem?> StopAsync(string name, CancellationToken cancellationToken) =>
        Problem((await vms.StopAsync(name, cancellationToken).ConfigureAwait(false)).Problem);

    public void EnforceLeases(Func<string, bool> leaseExpired) => vms.EnforceLeases(leaseExpired);

    public Task ResumeLeasedAsync(string name, CancellationToken cancellationToken) => vms.ResumeLeasedAsync(name, cancellationToken);

    public async Task<(ClusterProblem? Problem, long Instructions, byte[] Console)> CheckpointAsync(string name, string snapshotPath,
        CancellationToken cancellationToken)
    {
        ApiOutcome<(long Instructions, byte[] Console)> taken = await vms.CheckpointAsync(name, snapshotPath, cancellationToken).ConfigureAwait(false);
        return taken.Problem is { } problem ? (Problem(problem), 0, []) : (null, taken.Value.Instructions, taken.Value.Console);
    }

    private static ClusterProblem? Problem(ApiProblem? problem) => problem is null ? null : new ClusterProblem(problem.Status, problem.Detail);
}
