using System.Net;
using HybridVmm.Cli.Common;
using HybridVmm.Cli.Hosting;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Api;

/// <summary>
/// Live migration through the API (docs/serve.md#live-migration): out to another serve's <c>--migration-listen</c> (or a
/// <c>receive</c>), and in from another host. The existing pre-copy protocol runs unchanged; each of its steps that
/// touches a VM runs at a round barrier (<see cref="ServeMigrationHost"/>), so the other VMs of this host run on
/// between them, and the guest runs its pre-copy windows on the scheduler as it always does.
/// </summary>
public sealed partial class VmManager
{
    /// <summary>Where this host takes incoming migrations (HOST:PORT), once its listener is bound; null without one.</summary>
    public string? MigrationEndpoint { get; internal set; }

    /// <summary>
    /// A cluster host holds a VM that arrives by migration created, not started, until the VM's grain has moved its
    /// epoch here and adopts it (<see cref="HybridVmm.Cluster.Hosting.IHostAgent"/>): the VM never runs on two hosts.
    /// </summary>
    public bool HoldArrivals { get; set; }

    // The constructor's parameters, for the nested host (a primary constructor's parameters are its own type's alone).
    private HybridSystem Hybrid => system;

    private ControlBarrier Barrier => barrier;

    private ConsoleRecorder Recorder => console;

    private ServeMigrationOptions Migration => migration;

    /// <summary>
    /// Migrates a running VM to the serve (or receive) at <c>request.To</c>. While it migrates, every other operation on
    /// it is refused (409). On success it leaves this host: it is deleted here and its memory returned. On failure it
    /// runs on here, where it was.
    /// </summary>
    public async Task<ApiOutcome<MigrateVmResult>> MigrateAsync(string name, MigrateVmRequest request, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(request.To) || !Endpoints.TryParse(request.To, out IPEndPoint? target))
        {
            return ApiProblem.BadRequest($"'to' must be the HOST:PORT of the target's migration listener (serve --migration-listen), not '{request.To}'");
        }

        ApiOutcome<ManagedVm> taken = await AtBarrierAsync<ManagedVm>(() =>
        {
            if (Find(name) is not { } m)
            {
                return ApiProblem.UnknownVm(name);
            }

            if (Busy(m) is { } busy)
            {
                return busy;
            }

            if (m.Vm.State != PartitionState.Running)
            {
                return ApiProblem.Conflict($"'{name}' is {StateName(m.Vm.State)}; only a running VM is live-migrated");
            }

            // Pre-copy starts from a paused VM, which then runs its windows under the migration's control.
            system.Root.Pause(m.Vm);
            m.Busy = "being migrated";
            return m;
        }, cancellationToken).ConfigureAwait(false);
        if (taken.Problem is { } problem)
        {
            return problem;
        }

        ManagedVm managed = taken.Value!;
        logger.LogInformation("VM {Name} migrating to {Target}", name, target);
        MigrationReport report;
        try
        {
            // Not the request's token: a client that goes away must not cut a hand-over in half. serve's stopping does.
            string to = target!.ToString();
            managed.Migration = new MigrationStatus(to, "pre-copy", 0, 0, 0);
            report = await LiveMigration.ToAsync(new ServeMigrationHost(this), managed.Vm, target!, migration.Key,
                new MigrationOptions
                {
                    PeerTimeout = migration.PeerTimeout,
                    Progress = p => managed.Migration = new MigrationStatus(to, p.Phase == MigrationPhase.Final ? "final" : "pre-copy", p.Round, p.Pages, p.Bytes),
                }, lifetime.ApplicationStopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            report = new MigrationReport(false, "serve is stopping", [], 0, 0, TimeSpan.Zero, 0);
        }
        catch (Exception e)
        {
            // A bug must not leave the VM paused and busy for ever: it is reported, and the VM runs on here.
            logger.LogError(e, "Migration of VM {Name} failed unexpectedly", name);
            report = new MigrationReport(false, $"internal error: {e.Message}", [], 0, 0, TimeSpan.Zero, 0);
        }

        if (report.Succeeded)
        {
            logger.LogInformation("VM {Name} migrated to {Target}: {Rounds} pre-copy rounds, {Final} pages in the final copy, {Downtime:0.0} ms down",
                name, target, report.PagesPerRound.Count, report.FinalPages, report.DowntimeWallTime.TotalMilliseconds);
            return new MigrateVmResult(name, target!.ToString(), "migrated", report.PausedAtInstruction, report.PagesPerRound.ToArray(), report.FinalPages,
                report.DowntimeTicks, report.DowntimeWallTime.TotalMilliseconds);
        }

        // The VM stays here: it runs on from where pre-copy left it (a guest that finished meanwhile stays stopped).
        await AtBarrierAsync<bool>(() =>
        {
            managed.Busy = null;
            managed.Migration = null;
            if (managed.Vm.State == PartitionState.Paused)
            {
                system.Root.Start(managed.Vm);
            }

            return true;
        }, CancellationToken.None).ConfigureAwait(false);
        logger.LogWarning("VM {Name} did not migrate to {Target}: {Reason}; it runs on here", name, target, report.Failure);
        return new ApiProblem(report.Refused ? 403 : 502, report.Refused ? "Migration refused" : "Migration failed",
            $"'{name}' was not migrated to {target}: {report.Failure}; it stays on this host");
    }

    /// <summary>
    /// Receives one VM from a source that has passed the handshake, as <c>receive</c> does, into this running host.
    /// The VM joins the managed ones when it is restored, and starts once the source has committed the hand-over.
    /// </summary>
    internal async Task<(string? Name, string? Error)> ReceiveAsync(Stream source, string peer, CancellationToken cancellationToken)
    {
        (VirtualMachine? vm, string? error) = await LiveMigration.ReceiveAsync(new ServeMigrationHost(this, peer), source, cancellationToken,
            peerTimeout: migration.PeerTimeout).ConfigureAwait(false);
        if (vm is null)
        {
            return (null, error);
        }

        if (HoldArrivals)
        {
            logger.LogInformation("VM {Name} arrived from {Peer}; held until the cluster adopts it", vm.Name, peer);
            return (vm.Name, null);
        }

        ApiOutcome<VmInfo> started = await StartAsync(vm.Name, CancellationToken.None).ConfigureAwait(false);
        return started.Problem is { } problem ? (vm.Name, problem.Detail) : (vm.Name, null);
    }

    /// <summary>Deletes a VM that arrived by migration and never started; any other VM of that name is left alone.</summary>
    public Task DiscardArrivalAsync(string name, CancellationToken cancellationToken) => AtBarrierAsync<bool>(() =>
    {
        if (Find(name) is { } m && m.Vm.State == PartitionState.Created && m.Source.StartsWith(MigratedFrom, StringComparison.Ordinal))
        {
            Drop(m.Vm, deleteFirst: true);
            logger.LogWarning("VM {Name} arrived by migration but was never adopted; deleted", name);
        }

        return true;
    }, cancellationToken);

    private const string MigratedFrom = "migrated from ";

    /// <summary>serve's side of a migration: each step at a round barrier, the pre-copy windows on the running scheduler.</summary>
    private sealed class ServeMigrationHost(VmManager manager, string? peer = null) : MigrationHost(manager.Hybrid)
    {
        public override async Task<T> AtBarrierAsync<T>(Func<T> action, CancellationToken cancellationToken)
        {
            ApiOutcome<T> outcome = await manager.AtBarrierAsync(() => new ApiOutcome<T>(action(), null), cancellationToken).ConfigureAwait(false);
            // A scheduler that reaches no barrier has stopped (serve is stopping): the migration gives up.
            return outcome.Problem is { } problem ? throw new TimeoutException(problem.Detail) : outcome.Value!;
        }

        public override async Task RunForAsync(VirtualMachine vm, long instructions, CancellationToken cancellationToken)
        {
            await AtBarrierAsync(() =>
            {
                System.Root.PauseAtInstruction(vm, System.Root.BootInstructionsRetired(vm) + instructions);
                System.Root.Start(vm);
                return true;
            }, cancellationToken).ConfigureAwait(false);
            await manager.Barrier.WhenAsync(() => vm.State != PartitionState.Running, cancellationToken).ConfigureAwait(false);
        }

        /// <summary>The VM has left: it is deleted at the very barrier that stops it, so nothing ever sees it stopped here.</summary>
        public override void Departed(VirtualMachine vm) => manager.Drop(vm, deleteFirst: true);

        public override VmSnapshot Finishing(VirtualMachine vm, VmSnapshot final)
        {
            (byte[] bytes, long total) = manager.Recorder.Read(vm);
            return final with { Console = new ConsoleBacklog(bytes, total) };
        }

        /// <summary>The one of serve's <c>--migration-disk</c> files that is the disk the VM ran on (same size, same SHA-256).</summary>
        public override string? DiskFor(VmSnapshot final) =>
            manager.Migration.Disks.FirstOrDefault(path => File.Exists(path) && final.Disk!.Mismatch(path) is null);

        public override string? Admit(string name) =>
            manager.Find(name) is not null ? $"a VM named '{name}' already exists on this host" : null;

        public override void Arrived(VirtualMachine vm, VmSnapshot final)
        {
            if (final.Console is { } backlog)
            {
                manager.Recorder.Continue(vm, (backlog.Bytes, backlog.Total));
            }

            manager.Register(vm, MigratedFrom + peer, start: false);
        }

        public override void Withdrawn(VirtualMachine vm) => manager.Drop(vm, deleteFirst: false);
    }
}
