using HybridVmm.Cluster.Hosting;
using HybridVmm.Cluster.Placement;
using Microsoft.Extensions.Logging;
using Orleans.GrainDirectory;
using Orleans.Storage;
using Orleans.Runtime;
using Orleans;

namespace HybridVmm.Cluster.Grains;

/// <summary>The persisted control-plane record of one cluster VM.</summary>
[GenerateSerializer]
public sealed class VmRecord
{
    [Id(0)] public VmSpec? Spec { get; set; }

    /// <summary>running or stopped: what the user asked for.</summary>
    [Id(1)] public string DesiredState { get; set; } = "stopped";

    /// <summary>The silo address of the host that runs the current epoch.</summary>
    [Id(2)] public string? Host { get; set; }

    [Id(3)] public string? HostName { get; set; }

    /// <summary>Incremented each time the VM is started on a host anew; a host with an older epoch is fenced off.</summary>
    [Id(4)] public long Epoch { get; set; }

    [Id(5)] public CheckpointInfo? LastCheckpoint { get; set; }

    [Id(6)] public List<VmEvent> History { get; set; } = [];

    /// <summary>The state last reported: created, running, paused, stopped, lost (its host died unprotected).</summary>
    [Id(7)] public string State { get; set; } = "created";

    [Id(8)] public FailoverReport? LastFailover { get; set; }

    [Id(9)] public DateTime? StartedAt { get; set; }

    [Id(10)] public long Instructions { get; set; }

    /// <summary>The last progress report of the host running the current epoch, persisted at most once a second.</summary>
    [Id(11)] public DateTime LastReportAt { get; set; }

    [Id(12)] public long LastReportInstructions { get; set; }

    /// <summary>The last live migration, in progress while its EndedAt is null.</summary>
    [Id(13)] public MigrationInfo? LastMigration { get; set; }
}

[GrainDirectory(GrainDirectoryName = ClusterStorage.Name)]
public sealed partial class VmGrain(
    [PersistentState("vm", ClusterStorage.Name)] IPersistentState<VmRecord> record,
    ClusterHostOptions options,
    ILogger<VmGrain> logger) : Grain, IVmGrain
{
    private const int HistoryLimit = 50;

    /// <summary>How often a progress report is also written to Redis (it is kept in memory every time).</summary>
    private static readonly TimeSpan ReportPersistPeriod = TimeSpan.FromSeconds(1);

    private DateTime _lastPersistedReport = DateTime.MinValue;

    private VmRecord R => record.State;

    private string Name => this.GetPrimaryKeyString();

    public async Task<ClusterResult<ClusterVm>> CreateAsync(VmSpec spec, bool start, string? onHost = null)
    {
        if (R.Spec is not null)
        {
            return ClusterResult<ClusterVm>.Refused(409, $"the name '{Name}' is already taken in the cluster");
        }

        HostStatus? host;
        if (onHost is not null)
        {
            host = (await ClusterHosts.StatusAsync(GrainFactory)).FirstOrDefault(h => h.Name == onHost || h.Address == onHost);
            if (host is null)
            {
                return ClusterResult<ClusterVm>.Refused(404, $"no host named '{onHost}' in the cluster");
            }

            if (NoRoom(host, spec) is { } full)
            {
                return ClusterResult<ClusterVm>.Refused(503, full);
            }
        }
        else if ((host = await PlaceAsync(spec, exclude: null)) is null)
        {
            return ClusterResult<ClusterVm>.Refused(503, $"no host of the cluster offers {Needs(spec)} and can reach '{spec.Image}'");
        }

        long epoch = 1;
        if (await HostGrain(host.Address).CreateAsync(spec, epoch, start) is { } refused)
        {
            return new ClusterResult<ClusterVm>(null, refused);
        }

        R.Spec = spec;
        R.Epoch = epoch;
        R.Host = host.Address;
        R.HostName = host.Name;
        R.DesiredState = start ? "running" : "stopped";
        R.State = start ? "running" : "created";
        R.StartedAt = start ? DateTime.UtcNow : null;
        Record($"created on {host.Name} ({(onHost is null ? options.Placement : "as asked")})" +
            $"{(spec.Vcpus > 1 ? $" with {spec.Vcpus} vCPUs" : "")}{(spec.Snapshot is { } snapshot ? $" from the snapshot {snapshot}" : "")}{(start ? ", started" : "")}");
        await WriteAsync();
        await GrainFactory.GetGrain<IVmDirectoryGrain>(VmDirectoryGrain.Key).AddAsync(Name);
        return ClusterResult<ClusterVm>.Ok(View());
    }

    public async Task<ClusterResult<ClusterVm>> StartAsync()
    {
        if (R.Spec is null || R.Host is null)
        {
            return Unknown();
        }

        if (await HostGrain(R.Host).StartAsync(Name) is { } refused)
        {
            return new ClusterResult<ClusterVm>(null, refused);
        }

        R.DesiredState = "running";
        R.State = "running";
        R.StartedAt = DateTime.UtcNow;
        Record($"started on {R.HostName}");
        await WriteAsync();
        return ClusterResult<ClusterVm>.Ok(View());
    }

    public async Task<ClusterResult<ClusterVm>> StopAsync()
    {
        if (R.Spec is null || R.Host is null)
        {
            return Unknown();
        }

        // The desired state is written first: a host that dies meanwhile must not bring the VM back.
        R.DesiredState = "stopped";
        await WriteAsync();
        if (await HostGrain(R.Host).StopAsync(Name) is { } refused)
        {
            return new ClusterResult<ClusterVm>(null, refused);
        }

        R.State = "stopped";
        Record($"stopped on {R.HostName}");
        await WriteAsync();
        return ClusterResult<ClusterVm>.Ok(View());
    }

    public Task<ClusterResult<ClusterVm>> GetAsync() =>
        Task.FromResult(R.Spec is null ? Unknown() : ClusterResult<ClusterVm>.Ok(View()));

    public async Task<bool> HeartbeatAsync(long epoch, string host, long instructions, string state, string? exitReason)
    {
        if (_stale)
        {
            // Neither yes nor no: the host's lease runs out, and it asks ConfirmEpochAsync, which reads Redis.
            throw new InvalidOperationException($"the record of '{Name}' in this activation is stale; ask again");
        }

        if (epoch != R.Epoch || host != R.Host)
        {
            return false;
        }

        R.LastReportAt = DateTime.UtcNow;
        R.LastReportInstructions = instructions;
        R.Instructions = instructions;
        if (state == "stopped" && (R.State != "stopped" || _storeFailing) && R.LastMigration is not { InProgress: true })
        {
            // The guest ended by itself: it is done, and no failover must bring it back. The host reports it until
            // Redis has it.
            if (R.State != "stopped")
            {
                R.State = "stopped";
                R.DesiredState = "stopped";
                Record($"stopped on {R.HostName}: {exitReason ?? "stopped"} after {instructions} instructions");
            }

            await WriteAsync();
        }
        else
        {
            R.State = state;
            if (R.LastReportAt - _lastPersistedReport >= ReportPersistPeriod && _write.IsCompleted)
            {
                // Persisted now and then, so that a grain activated anew after its silo died still knows when the
                // VM last reported (the failover's detection time and instructions lost). Not awaited: the report is
                // taken from memory whether Redis answers or not.
                _lastPersistedReport = R.LastReportAt;
                _ = PersistProgressAsync();
            }
        }

        return true;
    }

    public async Task<bool> ConfirmEpochAsync(long epoch, string host)
    {
        if (!_stale && _storeFailing)
        {
            try
            {
                await WriteAsync(); // what this activation knows and Redis does not, unless Redis has newer
            }
            catch (Exception e) when (IsStale(e))
            {
            }
        }

        await ReadAsync();
        _stale = false;
        return epoch == R.Epoch && host == R.Host;
    }

    public async Task<bool> CheckpointTakenAsync(CheckpointInfo checkpoint)
    {
        if (checkpoint.Epoch != R.Epoch || checkpoint.Host != R.Host)
        {
            return false;
        }

        R.LastCheckpoint = checkpoint;
        await WriteAsync();
        return true;
    }

    public async Task<ClusterResult<ClusterVm>> MigrateAsync(string? toHost, string reason)
    {
        if (R.Spec is null || R.Host is null)
        {
            return Unknown();
        }

        HostStatus[] others = await ClusterHosts.StatusAsync(GrainFactory, exclude: R.Host);
        HostStatus? target = null;
        if (toHost is not null)
        {
            target = others.FirstOrDefault(h => h.Name == toHost || h.Address == toHost);
            if (target is null)
            {
                return toHost == R.HostName || toHost == R.Host
                    ? ClusterResult<ClusterVm>.Refused(409, $"'{Name}' already runs on {toHost}")
                    : ClusterResult<ClusterVm>.Refused(404, $"no other host named '{toHost}' in the cluster");
            }
        }

        if (R.LastMigration is { InProgress: true } pending)
        {
            return ClusterResult<ClusterVm>.Refused(409, $"'{Name}' is already migrating to {pending.To}");
        }

        if (R.State != "running" || R.DesiredState != "running")
        {
            return ClusterResult<ClusterVm>.Refused(409, $"'{Name}' is {R.State}; only a running VM is live-migrated");
        }

        if (target is null && (target = await GrainFactory.GetGrain<IPlacementGrain>(PlacementGrain.Key).ChooseAsync(R.Spec, exclude: R.Host)) is null)
        {
            return ClusterResult<ClusterVm>.Refused(503, $"no other host of the cluster offers {Needs(R.Spec)} for '{Name}'");
        }

        if (NoRoom(target, R.Spec) is { } full)
        {
            return ClusterResult<ClusterVm>.Refused(503, full);
        }

        if (target.MigrationEndpoint is not { } endpoint)
        {
            return ClusterResult<ClusterVm>.Refused(409, $"host {target.Name} takes no live migrations (start it with serve --migration-listen)");
        }

        R.LastMigration = new MigrationInfo(R.HostName ?? R.Host, target.Name, target.Address, R.Epoch + 1, reason, DateTime.UtcNow);
        Record($"migrating from {R.HostName} to {target.Name} ({reason})");
        await WriteAsync();
        if (await HostGrain(R.Host).MigrateOutAsync(Name, R.Epoch, target.Address, endpoint) is { } refused)
        {
            R.LastMigration = R.LastMigration with { EndedAt = DateTime.UtcNow, Failure = refused.Detail };
            Record($"migration to {target.Name} refused: {refused.Detail}");
            await WriteAsync();
            return new ClusterResult<ClusterVm>(null, refused);
        }

        return ClusterResult<ClusterVm>.Ok(View());
    }

    public async Task MigrationEndedAsync(long epoch, MigrationOutcome? outcome, string? failure, byte[] consolePrefix)
    {
        if (R.Spec is null || R.LastMigration is not { InProgress: true } migration || epoch != R.Epoch || migration.Epoch != epoch + 1)
        {
            return; // a late word about a migration this record no longer waits for
        }

        if (outcome is null)
        {
            R.LastMigration = migration with { EndedAt = DateTime.UtcNow, Failure = failure ?? "unknown" };
            Record($"migration to {migration.To} failed, it runs on at {R.HostName}: {failure}");
            await WriteAsync();
            return;
        }

        // The fence moves first: from the moment Redis holds the new epoch and host, no report of the old one counts.
        string from = R.HostName ?? "?";
        (long oldEpoch, string? oldHost, string? oldName) = (R.Epoch, R.Host, R.HostName);
        R.Epoch = migration.Epoch;
        R.Host = migration.ToAddress;
        R.HostName = migration.To;
        R.LastReportAt = DateTime.UtcNow;
        R.LastReportInstructions = outcome.Instructions;
        R.Instructions = outcome.Instructions;
        try
        {
            await WriteAsync();
        }
        catch
        {
            // Not in Redis, so not moved: the source asks again (it retries), and this must still match its epoch then.
            (R.Epoch, R.Host, R.HostName) = (oldEpoch, oldHost, oldName);
            throw;
        }
        ClusterProblem? refused = await HostGrain(migration.ToAddress).AdoptAsync(R.Spec, R.Epoch, consolePrefix, outcome.Instructions);
        R.LastMigration = migration with { EndedAt = DateTime.UtcNow, Succeeded = refused is null, Failure = refused?.Detail, Outcome = outcome };
        R.State = "running";
        if (refused is not null)
        {
            R.State = "lost";
            Record($"migrated from {from} to {migration.To}, but it could not start there: {refused.Detail}");
        }
        else
        {
            Record($"migrated from {from} to {migration.To} (epoch {R.Epoch}) at {outcome.Instructions} instructions: {outcome.PagesPerRound.Length} pre-copy " +
                $"round(s), {outcome.FinalPages} pages in the final copy, {outcome.DowntimeMilliseconds:0.0} ms down");
        }

        await WriteAsync();
    }

    public async Task<FailoverReport?> HostDiedAsync(string host, DateTime detectedAt)
    {
        if (R.LastMigration is { InProgress: true } pending && (pending.ToAddress == host || R.Host == host))
        {
            // A migration the dead host took part in cannot end; a copy the target holds unadopted goes (it never ran).
            R.LastMigration = pending with { EndedAt = DateTime.UtcNow, Failure = $"{(R.Host == host ? pending.From : pending.To)} died during the migration" };
            Record($"migration to {pending.To} abandoned: {R.LastMigration.Failure}");
            await WriteAsync();
            if (pending.ToAddress != host)
            {
                _ = HostGrain(pending.ToAddress).DiscardArrivalAsync(Name);
            }
        }

        if (R.Spec is null || R.Host != host || R.DesiredState != "running" || R.State is "stopped" or "lost")
        {
            return null;
        }

        string deadName = R.HostName ?? host;
        if (!R.Spec.Protected || R.LastCheckpoint is not { } checkpoint)
        {
            R.State = "lost";
            Record($"lost with {deadName}: {(R.Spec.Protected ? "no checkpoint yet" : "not protected")}");
            await WriteAsync();
            return null;
        }

        // Fence first: the new epoch is persisted (with Redis' etag check) before any host may run it.
        R.Epoch++;
        R.Host = null;
        R.State = "restarting";
        await WriteAsync();
        HostStatus? survivor = await PlaceAsync(R.Spec, exclude: host);
        if (survivor is null)
        {
            R.State = "lost";
            Record($"lost with {deadName}: no surviving host can take it");
            await WriteAsync();
            return null;
        }

        R.Host = survivor.Address;
        R.HostName = survivor.Name;
        await WriteAsync();
        DateTime restartBegins = DateTime.UtcNow;
        long epoch = R.Epoch;
        IHostGrain target = HostGrain(survivor.Address);
        ClusterProblem? refused = await target.RestoreAsync(R.Spec, checkpoint, epoch);
        if (refused is null)
        {
            // The fence, checked before the restored VM resumes: the epoch in Redis must still be ours. Another
            // activation of this grain (during a partition) that moved the VM meanwhile has a newer epoch there,
            // and our read would fail on the etag at our next write in any case.
            await ReadAsync();
            refused = R.Epoch == epoch && R.Host == survivor.Address
                ? await target.ResumeAsync(Name, epoch)
                : new ClusterProblem(409, $"epoch {epoch} was fenced off before it resumed (Redis holds epoch {R.Epoch})");
        }

        if (refused is not null)
        {
            _ = target.StopAsync(Name); // best effort: a restored copy that may not run must not linger
            R.State = "lost";
            Record($"restart on {survivor.Name} failed: {refused.Detail}");
            await WriteAsync();
            return null;
        }

        DateTime lastReport = R.LastReportAt > checkpoint.TakenAt ? R.LastReportAt : checkpoint.TakenAt;
        double detection = Math.Max(0, (detectedAt - lastReport).TotalSeconds);
        long lost = Math.Max(0, R.LastReportInstructions - checkpoint.Instructions);
        var report = new FailoverReport(deadName, survivor.Name, Math.Round(detection, 2), Math.Round((DateTime.UtcNow - restartBegins).TotalSeconds, 2),
            checkpoint.Instructions, lost, checkpoint);
        R.State = "running";
        R.LastFailover = report;
        R.StartedAt = DateTime.UtcNow;
        R.LastReportAt = DateTime.UtcNow;
        R.LastReportInstructions = checkpoint.Instructions;
        Record($"restarted on {survivor.Name} (epoch {R.Epoch}) from the checkpoint at {checkpoint.Instructions} instructions: " +
            $"{deadName} found dead {report.DetectionSeconds} s after its last report, restart {report.RestartSeconds} s, at least {lost} instructions lost");
        await WriteAsync();
        logger.LogWarning("VM {Name}: {Event}", Name, R.History[^1].What);
        return report;
    }

    /// <summary>"2 vCPUs and 16M free": what a VM needs of a host.</summary>
    private static string Needs(VmSpec spec) => $"{spec.Vcpus} vCPU{(spec.Vcpus == 1 ? "" : "s")} and {spec.Memory} free";

    /// <summary>Why the host cannot take the VM at all (more vCPUs than it offers, or not its memory free), or null.</summary>
    private string? NoRoom(HostStatus host, VmSpec spec) =>
        HostLoad.Fits(host, spec.Vcpus, PlacementPolicy.MemoryBytes(spec.Memory))
            ? null
            : $"host {host.Name} cannot take '{Name}': it offers {host.Capacity.Vcpus} vCPU{(host.Capacity.Vcpus == 1 ? "" : "s")} and has " +
              $"{(host.Capacity.MemoryBytes - host.MemoryUsedBytes) >> 20}M free; the VM needs {Needs(spec)}";

    private Task<HostStatus?> PlaceAsync(VmSpec spec, string? exclude) =>
        GrainFactory.GetGrain<IPlacementGrain>(PlacementGrain.Key).ChooseAsync(spec, exclude);

    private IHostGrain HostGrain(string address) => GrainFactory.GetGrain<IHostGrain>(address);

    private ClusterResult<ClusterVm> Unknown() => ClusterResult<ClusterVm>.Refused(404, $"no VM named '{Name}' in the cluster");

    private void Record(string what)
    {
        R.History.Add(new VmEvent(DateTime.UtcNow, what));
        if (R.History.Count > HistoryLimit)
        {
            R.History.RemoveAt(0);
        }
    }

    private ClusterVm View() => new(Name, R.DesiredState, R.State, R.Host, R.HostName, R.Epoch, R.Instructions, R.Spec?.Protected ?? false,
        R.LastCheckpoint, R.LastFailover, R.History.ToArray(), R.StartedAt, R.LastMigration, R.Spec?.Vcpus ?? 1, R.Spec?.Memory);
}
