using HybridVmm.Cluster.Grains;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans;

namespace HybridVmm.Cluster.Hosting;

/// <summary>
/// The host's side of the control plane, every <see cref="ClusterHostOptions.WatchPeriod"/>: it reports each cluster
/// VM's progress to its grain (which renews the VM's lease), checkpoints a protected VM once it has retired
/// <see cref="VmSpec.CheckpointEvery"/> instructions since its last checkpoint, and stops a VM whose epoch its grain has
/// fenced off (another host runs it now). Each VM is watched on its own, so one slow answer costs no other VM its lease.
/// </summary>
public sealed class ProtectedVmWatch(IHostAgent agent, LocalVms local, IGrainFactory grains, ILocalSiloDetails silo, ControlStoreWatch store,
    ClusterHostOptions options, ILogger<ProtectedVmWatch> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        agent.EnforceLeases(local.LeaseExpired);
        using var timer = new PeriodicTimer(options.WatchPeriod);
        string self = silo.SiloAddress.ToParsableString();
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            LocalVms.LocalVm[] mine = local.All();
            if (mine.Length == 0)
            {
                continue;
            }

            HostVm[] vms;
            try
            {
                (_, vms) = await agent.ListAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (InvalidOperationException)
            {
                continue; // the hypervisor is stopping
            }

            await Task.WhenAll(mine.Where(v => !v.AwaitingResume).Select(vm => WatchAsync(vm, vms, self, stoppingToken))).ConfigureAwait(false);
        }
    }

    private async Task WatchAsync(LocalVms.LocalVm vm, HostVm[] vms, string self, CancellationToken cancellationToken)
    {
        if (vms.FirstOrDefault(v => v.Name == vm.Spec.Name) is not { } now)
        {
            local.Remove(vm.Spec.Name);
            return;
        }

        try
        {
            await ReportAsync(vm, now, self, cancellationToken).ConfigureAwait(false);
            if (vm.ReportFailing)
            {
                vm.ReportFailing = false;
                logger.LogInformation("VM {Name}: its grain takes this host's reports again", vm.Spec.Name);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // The VM's grain, or Redis behind it, is out of reach for now: the VM runs on until its lease runs out,
            // and the next tick tries again. Said once, not four times a second.
            if (!vm.ReportFailing)
            {
                vm.ReportFailing = true;
                logger.LogWarning("cluster degraded: VM {Name}: cannot report to its grain: {Reason}", vm.Spec.Name, e.Message);
            }
        }
    }

    private async Task ReportAsync(LocalVms.LocalVm vm, HostVm now, string self, CancellationToken cancellationToken)
    {
        IVmGrain grain = grains.GetGrain<IVmGrain>(vm.Spec.Name);
        // A lease counts from when its report was sent, not from when the answer came: a host frozen after the grain
        // took a report, and thawed long after, finds that report's lease already run out.
        long sentAt = Environment.TickCount64;
        bool expired = sentAt > vm.LeaseUntil;
        // A VM whose lease ran out runs on only once Redis itself says the epoch is still ours: the grain that
        // answers from memory may be a stale activation on a host that was cut off too (this one).
        bool ours = (!expired || await grain.ConfirmEpochAsync(vm.Epoch, self).WaitAsync(options.Lease, cancellationToken).ConfigureAwait(false))
            && await grain.HeartbeatAsync(vm.Epoch, self, now.Instructions, ReportedState(vm, now), now.ExitReason).WaitAsync(options.Lease, cancellationToken).ConfigureAwait(false);
        if (!ours)
        {
            await FenceAsync(vm, "another host runs the VM now").ConfigureAwait(false);
            return;
        }

        vm.LeaseUntil = Math.Max(vm.LeaseUntil, sentAt + (long)options.Lease.TotalMilliseconds);
        if (now.State == "stopped")
        {
            local.Remove(vm.Spec.Name);
            return;
        }

        if (expired || now.State == "paused")
        {
            // The epoch is still ours: a VM the lease paused may run on (if the renewed lease is still good when the
            // scheduler reaches its barrier); a VM paused by its user stays paused.
            await agent.ResumeLeasedAsync(vm.Spec.Name, cancellationToken).ConfigureAwait(false);
        }

        // A checkpoint runs beside the reports, one at a time: recording it waits for Redis, and a report must not
        // wait for that. One Redis cannot record is not worth writing: they resume when it answers.
        if (vm.Spec.Protected && now.State == "running" && now.Instructions - vm.LastCheckpointInstructions >= vm.Spec.CheckpointEvery
            && vm.Checkpointing.IsCompleted && !store.Degraded)
        {
            vm.Checkpointing = CheckpointOrSayWhyAsync(vm, grain, self, cancellationToken);
        }
    }

    /// <summary>
    /// The state the VM's grain is told: a running VM held paused for a moment while its checkpoint is written is
    /// running (it resumes once the file is written), so that a live migration asked meanwhile is not refused as if a
    /// user had paused it.
    /// </summary>
    private static string ReportedState(LocalVms.LocalVm vm, HostVm now) =>
        now.State == "paused" && !vm.Checkpointing.IsCompleted ? "running" : now.State;

    private async Task CheckpointOrSayWhyAsync(LocalVms.LocalVm vm, IVmGrain grain, string self, CancellationToken cancellationToken)
    {
        try
        {
            await CheckpointAsync(vm, grain, self, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("VM {Name}: its checkpoint is not recorded: {Reason}", vm.Spec.Name, e.Message);
        }
    }

    /// <summary>
    /// Writes the snapshot and the console output so far under names no other epoch uses, then tells the grain. The
    /// grain takes it only if this host still runs the current epoch.
    /// </summary>
    private async Task CheckpointAsync(LocalVms.LocalVm vm, IVmGrain grain, string self, CancellationToken cancellationToken)
    {
        string stem = Path.Combine(options.CheckpointDirectory, $"{vm.Spec.Name}.e{vm.Epoch}.{vm.Sequence++}");
        (ClusterProblem? problem, long instructions, byte[] console) =
            await agent.CheckpointAsync(vm.Spec.Name, stem + ".snap", cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            logger.LogWarning("VM {Name}: checkpoint failed: {Detail}", vm.Spec.Name, problem.Detail);
            return;
        }

        // The console output up to the capture (read at the same barrier): a VM restored from this checkpoint writes
        // what follows, so the two together are the guest's whole output.
        await File.WriteAllBytesAsync(stem + ".console", [.. vm.ConsolePrefix, .. console], cancellationToken).ConfigureAwait(false);
        var checkpoint = new CheckpointInfo(vm.Epoch, stem + ".snap", stem + ".console", instructions, DateTime.UtcNow, self);
        // The next one comes N instructions on whether this one is recorded or not (Redis may be down): no storm of
        // snapshots that cannot be recorded.
        vm.LastCheckpointInstructions = instructions;
        if (!await grain.CheckpointTakenAsync(checkpoint).WaitAsync(options.Lease, cancellationToken).ConfigureAwait(false))
        {
            await FenceAsync(vm, "another host runs the VM now").ConfigureAwait(false);
        }
    }

    private async Task FenceAsync(LocalVms.LocalVm vm, string why)
    {
        if (!local.Remove(vm.Spec.Name))
        {
            return; // fenced already (DeclaredDeadFence)
        }

        Task fence = StopFencedAsync(agent, logger, vm, why, TimeSpan.FromSeconds(30));
        local.AddFence(fence);
        await fence.ConfigureAwait(false);
    }

    /// <summary>
    /// Stops a VM whose epoch is fenced off and says so, with the instructions it had retired when it stopped (a
    /// paused VM has not moved since its lease ran out).
    /// </summary>
    internal static async Task StopFencedAsync(IHostAgent agent, ILogger logger, LocalVms.LocalVm vm, string why, TimeSpan limit)
    {
        using var cancel = new CancellationTokenSource(limit);
        ClusterProblem? refused = await StopAsync(agent, vm, cancel.Token).ConfigureAwait(false);
        (_, HostVm[] vms) = await agent.ListAsync(cancel.Token).ConfigureAwait(false);
        HostVm? now = vms.FirstOrDefault(v => v.Name == vm.Spec.Name);
        if (now is { State: not "stopped" })
        {
            logger.LogError("VM {Name}: epoch {Epoch} is fenced off ({Why}), but it could not be stopped here: {Reason}", vm.Spec.Name, vm.Epoch, why,
                refused?.Detail ?? now.State);
            return;
        }

        logger.LogWarning("VM {Name}: epoch {Epoch} is fenced off ({Why}); stopped here at {Instructions} instructions", vm.Spec.Name, vm.Epoch, why,
            now?.Instructions.ToString() ?? "?");
    }

    /// <summary>
    /// Stops a cluster VM of this host. A checkpoint being written holds the VM as it was captured (the host refuses
    /// to change it, and resumes it once the file is written), so the stop waits for that checkpoint and tries again.
    /// </summary>
    internal static async Task<ClusterProblem?> StopAsync(IHostAgent agent, LocalVms.LocalVm vm, CancellationToken cancellationToken)
    {
        while (true)
        {
            await vm.Checkpointing.WaitAsync(cancellationToken).ConfigureAwait(false);
            ClusterProblem? refused = await agent.StopAsync(vm.Spec.Name, cancellationToken).ConfigureAwait(false);
            if (refused is null || refused.Status != 409 || vm.Checkpointing.IsCompleted && !await BeingCheckpointedAsync(agent, vm, cancellationToken))
            {
                return refused;
            }
        }
    }

    /// <summary>Whether the host still has the VM running or paused (a refusal with a checkpoint just finished: try again).</summary>
    private static async Task<bool> BeingCheckpointedAsync(IHostAgent agent, LocalVms.LocalVm vm, CancellationToken cancellationToken)
    {
        await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        (_, HostVm[] vms) = await agent.ListAsync(cancellationToken).ConfigureAwait(false);
        return vms.FirstOrDefault(v => v.Name == vm.Spec.Name) is { State: "running" or "paused" };
    }
}
