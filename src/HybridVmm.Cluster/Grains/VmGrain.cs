using HybridVmm.Cluster.Hosting;
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

    public async Task<ClusterResult<ClusterVm>> CreateAsync(VmSpec spec, bool start)
    {
        if (R.Spec is not null)
        {
            return ClusterResult<ClusterVm>.Refused(409, $"the name '{Name}' is already taken in the cluster");
        }

        HostStatus? host = await PlaceAsync(spec, exclude: null);
        if (host is null)
        {
            return ClusterResult<ClusterVm>.Refused(503, $"no host of the cluster has {spec.Memory} free and can reach '{spec.Image}'");
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
        Record($"created on {host.Name} ({options.Placement}){(start ? ", started" : "")}");
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
        if (state == "stopped" && (R.State != "stopped" || _storeFailing))
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

    public async Task<FailoverReport?> HostDiedAsync(string host, DateTime detectedAt)
    {
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
        R.LastCheckpoint, R.LastFailover, R.History.ToArray(), R.StartedAt);
}
