using Orleans;

namespace HybridVmm.Cluster;

// The documents that travel between hosts, grains and the cluster client (docs/cluster.md describes each field).

/// <summary>What a host offers the cluster: the vCPUs and memory it schedules VMs on, and the guest images it can reach.</summary>
[GenerateSerializer, Immutable]
public sealed record HostCapacity(
    [property: Id(0)] int Vcpus,
    [property: Id(1)] long MemoryBytes,
    [property: Id(2)] string[] Images);

/// <summary>One VM as its host sees it: the state of its partition, the instructions it has retired, its memory and vCPUs.</summary>
[GenerateSerializer, Immutable]
public sealed record HostVm(
    [property: Id(0)] string Name,
    [property: Id(1)] string State,
    [property: Id(2)] long Instructions,
    [property: Id(3)] long MemoryBytes,
    [property: Id(4)] string? ExitReason,
    [property: Id(5)] int Vcpus = 1)
{
    /// <summary>Created, running or paused: the VM holds its memory and vCPUs on this host (a created or paused one will run here).</summary>
    public bool Active => State is "running" or "paused" or "created";
}

/// <summary>A host of the cluster and its load (<see cref="Placement.HostLoad"/>: docs/cluster.md#load).</summary>
[GenerateSerializer, Immutable]
public sealed record HostStatus(
    [property: Id(0)] string Address,
    [property: Id(1)] string Name,
    [property: Id(2)] HostCapacity Capacity,
    [property: Id(3)] long MemoryUsedBytes,
    [property: Id(4)] HostVm[] Vms,
    [property: Id(5)] string? MigrationEndpoint = null)
{
    /// <summary>VMs that hold the host's memory and vCPUs: created, running or paused.</summary>
    public int ActiveVms => Vms.Count(v => v.Active);

    /// <summary>The active VMs' vCPUs, against <see cref="HostCapacity.Vcpus"/>.</summary>
    public int ActiveVcpus => Vms.Where(v => v.Active).Sum(v => v.Vcpus);

    /// <summary>The host's load in percent of its capacity: the larger of its vCPU and its memory share (<see cref="Placement.HostLoad"/>).</summary>
    public double LoadPercent => Math.Round(Placement.HostLoad.Of(this) * 100, 1);
}

/// <summary>
/// What a new cluster VM is: the image (or the snapshot file it is made from), its memory and vCPUs, and whether HA
/// protects it. A VM made from a snapshot has the snapshot's memory and vCPUs, which its creator read from the file.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record VmSpec(
    [property: Id(0)] string Name,
    [property: Id(1)] string Image,
    [property: Id(2)] string Memory,
    [property: Id(3)] string CommandLine,
    [property: Id(4)] long MaxInstructions,
    [property: Id(5)] bool Protected,
    [property: Id(6)] long CheckpointEvery,
    [property: Id(7)] int Cpus = 1,
    [property: Id(8)] string? Snapshot = null)
{
    /// <summary>The VM's virtual processors (a record written before vCPUs were carried reads 0: one).</summary>
    public int Vcpus => Cpus < 1 ? 1 : Cpus;
}

/// <summary>A refusal from a host or a grain: an HTTP-style status (400, 404, 409, 503) and one clear sentence.</summary>
[GenerateSerializer, Immutable]
public sealed record ClusterProblem([property: Id(0)] int Status, [property: Id(1)] string Detail);

/// <summary>A checkpoint of a protected VM in the shared directory: the snapshot file and the console output before it.</summary>
[GenerateSerializer, Immutable]
public sealed record CheckpointInfo(
    [property: Id(0)] long Epoch,
    [property: Id(1)] string SnapshotPath,
    [property: Id(2)] string ConsolePath,
    [property: Id(3)] long Instructions,
    [property: Id(4)] DateTime TakenAt,
    [property: Id(5)] string Host);

/// <summary>One line of a VM's history: when, and what happened.</summary>
[GenerateSerializer, Immutable]
public sealed record VmEvent([property: Id(0)] DateTime At, [property: Id(1)] string What);

/// <summary>A failover's figures: how long the death took to detect, how long the restart took, what was lost.</summary>
[GenerateSerializer, Immutable]
public sealed record FailoverReport(
    [property: Id(0)] string DeadHost,
    [property: Id(1)] string NewHost,
    [property: Id(2)] double DetectionSeconds,
    [property: Id(3)] double RestartSeconds,
    [property: Id(4)] long CheckpointInstructions,
    [property: Id(5)] long InstructionsLost,
    [property: Id(6)] CheckpointInfo Checkpoint);

/// <summary>What a live migration between two hosts did (<c>vm migrate --cluster</c>, or the balancer).</summary>
[GenerateSerializer, Immutable]
public sealed record MigrationOutcome(
    [property: Id(0)] long Instructions,
    [property: Id(1)] int[] PagesPerRound,
    [property: Id(2)] int FinalPages,
    [property: Id(3)] double DowntimeMilliseconds);

/// <summary>A VM's last live migration: from where to where, who asked, and how it ended (null while it runs).</summary>
[GenerateSerializer, Immutable]
public sealed record MigrationInfo(
    [property: Id(0)] string From,
    [property: Id(1)] string To,
    [property: Id(2)] string ToAddress,
    [property: Id(3)] long Epoch,
    [property: Id(4)] string Reason,
    [property: Id(5)] DateTime StartedAt,
    [property: Id(6)] DateTime? EndedAt = null,
    [property: Id(7)] bool Succeeded = false,
    [property: Id(8)] string? Failure = null,
    [property: Id(9)] MigrationOutcome? Outcome = null)
{
    public bool InProgress => EndedAt is null;
}

/// <summary>A cluster VM: its control-plane record (the grain's state) joined with what its host says now.</summary>
[GenerateSerializer, Immutable]
public sealed record ClusterVm(
    [property: Id(0)] string Name,
    [property: Id(1)] string DesiredState,
    [property: Id(2)] string State,
    [property: Id(3)] string? Host,
    [property: Id(4)] string? HostName,
    [property: Id(5)] long Epoch,
    [property: Id(6)] long Instructions,
    [property: Id(7)] bool Protected,
    [property: Id(8)] CheckpointInfo? LastCheckpoint,
    [property: Id(9)] FailoverReport? LastFailover,
    [property: Id(10)] VmEvent[] History,
    [property: Id(11)] DateTime? StartedAt,
    [property: Id(12)] MigrationInfo? LastMigration = null,
    [property: Id(13)] int Vcpus = 1,
    [property: Id(14)] string? Memory = null);

/// <summary>A grain call's result: a value or a problem.</summary>
[GenerateSerializer, Immutable]
public sealed record ClusterResult<T>([property: Id(0)] T? Value, [property: Id(1)] ClusterProblem? Problem)
{
    public static ClusterResult<T> Ok(T value) => new(value, null);

    public static ClusterResult<T> Refused(int status, string detail) => new(default, new ClusterProblem(status, detail));
}
