using HybridVmm.Cluster.Grains;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans;

namespace HybridVmm.Cluster.Hosting;

/// <summary>
/// The host's side of the control plane, every <see cref="ClusterHostOptions.WatchPeriod"/>: it reports each cluster
/// VM's progress to its grain, checkpoints a protected VM once it has retired <see cref="VmSpec.CheckpointEvery"/>
/// instructions since its last checkpoint, and stops a VM whose epoch its grain has fenced off (another host runs it now).
/// </summary>
public sealed class ProtectedVmWatch(IHostAgent agent, LocalVms local, IGrainFactory grains, ILocalSiloDetails silo, ClusterHostOptions options,
    ILogger<ProtectedVmWatch> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        agent.EnforceLeases(local.LeaseExpired);
        using var timer = new PeriodicTimer(options.WatchPeriod);
        string self = silo.SiloAddress.ToParsableString();
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                await WatchOnceAsync(self, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Redis or the VM's grain is out of reach for now: the VMs run on, and the next tick tries again.
                logger.LogWarning("cluster degraded: cannot report to the control plane: {Reason}", e.Message);
            }
        }
    }

    private async Task WatchOnceAsync(string self, CancellationToken cancellationToken)
    {
        LocalVms.LocalVm[] mine = local.All();
        if (mine.Length == 0)
        {
            return;
        }

        (_, HostVm[] vms) = await agent.ListAsync(cancellationToken).ConfigureAwait(false);
        foreach (LocalVms.LocalVm vm in mine.Where(v => !v.AwaitingResume))
        {
            if (vms.FirstOrDefault(v => v.Name == vm.Spec.Name) is not { } now)
            {
                local.Remove(vm.Spec.Name);
                continue;
            }

            IVmGrain grain = grains.GetGrain<IVmGrain>(vm.Spec.Name);
            if (!await grain.HeartbeatAsync(vm.Epoch, self, now.Instructions, now.State, now.ExitReason).ConfigureAwait(false))
            {
                await FenceAsync(vm).ConfigureAwait(false);
                continue;
            }

            bool expired = Environment.TickCount64 > vm.LeaseUntil;
            vm.LeaseUntil = Environment.TickCount64 + (long)options.Lease.TotalMilliseconds;
            if (now.State == "stopped")
            {
                local.Remove(vm.Spec.Name);
                continue;
            }

            if (expired)
            {
                // The grain took this report: the epoch is still ours, and the VM the lease paused may run on.
                await agent.ResumeLeasedAsync(vm.Spec.Name, cancellationToken).ConfigureAwait(false);
            }

            if (vm.Spec.Protected && now.State == "running" && now.Instructions - vm.LastCheckpointInstructions >= vm.Spec.CheckpointEvery)
            {
                await CheckpointAsync(vm, grain, self, cancellationToken).ConfigureAwait(false);
            }
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
        if (await grain.CheckpointTakenAsync(checkpoint).ConfigureAwait(false))
        {
            vm.LastCheckpointInstructions = instructions;
        }
        else
        {
            await FenceAsync(vm).ConfigureAwait(false);
        }
    }

    private async Task FenceAsync(LocalVms.LocalVm vm)
    {
        logger.LogWarning("VM {Name}: epoch {Epoch} is fenced off (another host runs the VM now); stopping it here", vm.Spec.Name, vm.Epoch);
        local.Remove(vm.Spec.Name);
        await agent.StopAsync(vm.Spec.Name, CancellationToken.None).ConfigureAwait(false);
    }
}
