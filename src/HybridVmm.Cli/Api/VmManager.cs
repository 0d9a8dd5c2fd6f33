using HybridVmm.Cli.Hosting;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace HybridVmm.Cli.Api;

/// <summary>
/// VM management for the API: the VMs of a serve host by name, and every operation on them. Each operation checks
/// and acts inside one <see cref="ControlBarrier"/> action, so a state transition is atomic with respect to every
/// other request and to the guest (it never runs meanwhile). File I/O (reading an image or snapshot, writing a
/// checkpoint) happens outside the barrier, so a slow disk never stalls the guests.
/// </summary>
public sealed partial class VmManager(HybridSystem system, ControlBarrier barrier, ConsoleRecorder console, ServeMigrationOptions migration,
    IHostApplicationLifetime lifetime, ILogger<VmManager> logger, IOptions<HybridVmmOptions> options) : IServeVmListener
{
    private readonly Dictionary<string, ManagedVm> _vms = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A VM under management, and where it came from; reset swaps in a new VM under the same name.</summary>
    private sealed class ManagedVm(VirtualMachine vm, string source)
    {
        public VirtualMachine Vm { get; set; } = vm;

        public string Source => source;

        /// <summary>
        /// What holds it as it is, or null: "being saved" while its snapshot is written from its paused RAM
        /// (<see cref="WritePausedAsync"/>), "being migrated" during a live migration. It must not change meanwhile.
        /// </summary>
        public string? Busy { get; set; }

        /// <summary>Where its live migration has got to while it is being migrated (written by the migration as each frame goes), or null.</summary>
        public volatile MigrationStatus? Migration;

        /// <summary>Its cluster lease was renewed while it was being saved: it runs on once the snapshot is written.</summary>
        public bool ResumeWhenSaved { get; set; }
    }

    /// <summary>Takes a VM serve created from its configuration under management.</summary>
    public void Created(VirtualMachine vm, string source)
    {
        lock (_vms)
        {
            _vms[vm.Name] = new ManagedVm(vm, source);
        }

        WatchExit(vm);
    }

    /// <summary>The root partition's message loop runs: VMs created from now on get their workers at once.</summary>
    public void RootRunning() => _ready.TrySetResult();

    public Task<ApiOutcome<HostInfo>> HostAsync(CancellationToken cancellationToken) => AtBarrierAsync<HostInfo>(() =>
    {
        ManagedVm[] vms = All();
        var byState = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (ManagedVm m in vms)
        {
            string state = StateName(m.Vm.State);
            byState[state] = byState.GetValueOrDefault(state) + 1;
        }

        return new HostInfo(typeof(VmManager).Assembly.GetName().Version?.ToString() ?? "0", system.Kernel.Options.HostMemoryBytes,
            system.HostMemoryUsedBytes, system.Kernel.Options.Quantum, system.Kernel.Clock.Ticks, system.Kernel.Scheduler.Rounds,
            vms.Length, byState, MigrationEndpoint);
    }, cancellationToken);

    public Task<ApiOutcome<IReadOnlyList<VmInfo>>> ListAsync(CancellationToken cancellationToken) =>
        AtBarrierAsync<IReadOnlyList<VmInfo>>(() => All().Select(Describe).ToArray(), cancellationToken);

    public Task<ApiOutcome<VmInfo>> ReadAsync(string name, CancellationToken cancellationToken) =>
        AtBarrierAsync<VmInfo>(() => Find(name) is { } m ? Describe(m) : ApiProblem.UnknownVm(name), cancellationToken);

    /// <summary>The kernel's partitions as the root enumerates them, the root's own first.</summary>
    public Task<ApiOutcome<IReadOnlyList<PartitionInfo>>> PartitionsAsync(CancellationToken cancellationToken) =>
        AtBarrierAsync<IReadOnlyList<PartitionInfo>>(() => system.Root.Partitions().Select(DescribePartition).ToArray(), cancellationToken);

    public Task<ApiOutcome<PartitionInfo>> PartitionAsync(int id, CancellationToken cancellationToken) =>
        AtBarrierAsync<PartitionInfo>(() => system.Root.Partitions().FirstOrDefault(p => p.Handle.Id == id) is { } partition
            ? DescribePartition(partition)
            : ApiProblem.NotFound($"no partition with ID {id}"), cancellationToken);

    private PartitionInfo DescribePartition(PartitionSummary p)
    {
        string? vm = p.IsRoot ? null : All().FirstOrDefault(m => m.Vm.Partition == p.Handle)?.Vm.Name;
        return new PartitionInfo(p.Handle.Id, p.Name, p.IsRoot ? "root" : "guest", StateName(p.State), vm, (long)p.MemoryBytes,
            [.. p.Processors.Select((state, i) => new VcpuInfo(i, VpStateName(state)))], p.Statistics.InstructionsRetired,
            p.Statistics.TotalIntercepts, p.Statistics.ChannelMessages, p.Statistics.VirtualTicks(system.Kernel.Clock.Ticks));
    }

    public Task<ApiOutcome<VmStatistics>> StatisticsAsync(string name, CancellationToken cancellationToken) =>
        AtBarrierAsync<VmStatistics>(() => Find(name) is { } m ? Statistics(m.Vm) : ApiProblem.UnknownVm(name), cancellationToken);

    /// <summary>The VM's console output still in its ring buffer, and the bytes it has written in all.</summary>
    public ApiOutcome<(byte[] Bytes, long Total)> ConsoleOutput(string name) =>
        Find(name) is { } m ? console.Read(m.Vm) : ApiProblem.UnknownVm(name);

    public Task<ApiOutcome<VmInfo>> StartAsync(string name, CancellationToken cancellationToken) =>
        TransitionAsync(name, cancellationToken, vm => vm.State switch
        {
            PartitionState.Created => Do(() => system.Root.Start(vm)),
            PartitionState.Running => ApiProblem.Conflict($"'{vm.Name}' is already running"),
            PartitionState.Paused => ApiProblem.Conflict($"'{vm.Name}' is paused; resume it instead"),
            _ => ApiProblem.Conflict($"'{vm.Name}' has stopped and cannot be started again; reset it, or create a new VM"),
        });

    public Task<ApiOutcome<VmInfo>> PauseAsync(string name, CancellationToken cancellationToken) =>
        TransitionAsync(name, cancellationToken, vm => vm.State switch
        {
            // At the barrier the vCPU is between two instructions with no intercept outstanding: it stays exactly there.
            PartitionState.Running => Do(() => system.Root.Pause(vm)),
            PartitionState.Paused => ApiProblem.Conflict($"'{vm.Name}' is already paused"),
            PartitionState.Created => ApiProblem.Conflict($"'{vm.Name}' has not been started"),
            _ => ApiProblem.Conflict($"'{vm.Name}' has stopped; only a running VM can be paused"),
        });

    public Task<ApiOutcome<VmInfo>> ResumeAsync(string name, CancellationToken cancellationToken) =>
        TransitionAsync(name, cancellationToken, vm => vm.State switch
        {
            PartitionState.Paused => Do(() => system.Root.Start(vm)),
            PartitionState.Running => ApiProblem.Conflict($"'{vm.Name}' is already running"),
            PartitionState.Created => ApiProblem.Conflict($"'{vm.Name}' has not been started; start it instead"),
            _ => ApiProblem.Conflict($"'{vm.Name}' has stopped; only a paused VM can be resumed"),
        });

    public Task<ApiOutcome<VmInfo>> StopAsync(string name, CancellationToken cancellationToken) =>
        TransitionAsync(name, cancellationToken, vm => vm.State == PartitionState.Stopped
            ? ApiProblem.Conflict($"'{vm.Name}' has already stopped")
            : Do(() => system.Root.Stop(vm)));

    /// <summary>Stops the VM and deletes it, returning its memory to the host.</summary>
    public Task<ApiOutcome<VmInfo>> DeleteAsync(string name, CancellationToken cancellationToken) => AtBarrierAsync<VmInfo>(() =>
    {
        if (Find(name) is not { } m)
        {
            return ApiProblem.UnknownVm(name);
        }

        if (Busy(m) is { } busy)
        {
            return busy;
        }

        VmInfo last = Describe(m) with { State = "deleted" };
        Drop(m.Vm, deleteFirst: true);
        logger.LogInformation("VM {Name} deleted through the API", name);
        return last;
    }, cancellationToken);

    /// <summary>
    /// Reset: the VM boots again from its image, as a PC's reset button does: a new partition with fresh memory and
    /// devices under the same name. A VM made from a snapshot has no image to boot.
    /// </summary>
    public Task<ApiOutcome<VmInfo>> ResetAsync(string name, CancellationToken cancellationToken) => AtBarrierAsync<VmInfo>(() =>
    {
        if (Find(name) is not { } m)
        {
            return ApiProblem.UnknownVm(name);
        }

        return Busy(m) is { } busy ? busy : Reboot(m, "through the API");
    }, cancellationToken);

    /// <summary>
    /// A guest that reset the machine boots again (<see cref="HybridVmmOptions.OnGuestReset"/>), unless the VM was
    /// replaced, deleted or taken meanwhile: it is still that VM's name's VM, and nothing holds it.
    /// </summary>
    private async Task RebootAfterGuestResetAsync(VirtualMachine vm)
    {
        ApiOutcome<VmInfo> outcome;
        try
        {
            outcome = await AtBarrierAsync<VmInfo>(() => Find(vm.Name) is not { } m || m.Vm != vm
                    ? ApiProblem.Conflict("replaced")
                    : Busy(m) is { } busy ? busy : Reboot(m, vm.Exited.Result.Diagnostic is { } tripleFault
                        ? $"after its guest's {tripleFault.Split('\n')[0]}, which resets a PC"
                        : "after its guest reset the machine", keepConsole: true),
                lifetime.ApplicationStopping);
        }
        catch (OperationCanceledException)
        {
            return; // serve is stopping
        }
        finally
        {
            Booted(vm, null); // a console waiting for the next boot stops waiting if there was none
        }

        if (outcome.Problem is { Detail: not "replaced" } problem)
        {
            logger.LogWarning("VM {Name} reset the machine and did not boot again: {Why}", vm.Name, problem.Detail);
        }
    }

    /// <summary>
    /// At a barrier: deletes the VM's partition and creates a new one from the same configuration, under the same name.
    /// After a guest's own reset (<paramref name="keepConsole"/>) its console's backlog goes on, as a serial line does
    /// across a reboot, and an attached console stays attached to the new boot, its output and its input. A reset by the
    /// API (<c>vm reset</c>) starts the backlog afresh and ends an attached console's session, whose VM it stopped.
    /// </summary>
    private ApiOutcome<VmInfo> Reboot(ManagedVm m, string why, bool keepConsole = false)
    {
        string name = m.Vm.Name;
        VirtualMachine old = m.Vm;
        if (old.Configuration.Image.Length == 0)
        {
            return ApiProblem.Conflict($"'{name}' was restored from a snapshot and has no image to boot again; restore the snapshot instead");
        }

        if (system.Root.Reboot(old, old.Configuration, out VmCreationError? error) is not { } vm)
        {
            console.Forget(old);
            lock (_vms)
            {
                _vms.Remove(name);
            }

            Booted(old, null);
            return ApiProblem.Conflict($"'{name}' could not boot again and is deleted: {error!.Message}");
        }

        console.Reboot(old, vm, keepBacklog: keepConsole);
        if (AttachedInput(name) is { } input)
        {
            vm.Com1.ConnectInput(input);
        }

        m.Vm = vm;
        Booted(old, vm);
        WatchExit(vm);
        system.Root.Start(vm);
        logger.LogInformation("VM {Name} booted again {Why}: partition {Partition}", name, why, vm.Partition.Id);
        return Describe(m);
    }

    private Task<ApiOutcome<VmInfo>> TransitionAsync(string name, CancellationToken cancellationToken, Func<VirtualMachine, ApiProblem?> transition) =>
        AtBarrierAsync<VmInfo>(() =>
        {
            if (Find(name) is not { } m)
            {
                return ApiProblem.UnknownVm(name);
            }

            return (Busy(m) ?? transition(m.Vm)) is { } refused ? refused : Describe(m);
        }, cancellationToken);

    private static ApiProblem? Do(Action action)
    {
        action();
        return null;
    }

    /// <summary>Runs <paramref name="action"/> at a round barrier once serve is ready; a stopped scheduler is a 503.</summary>
    private async Task<ApiOutcome<T>> AtBarrierAsync<T>(Func<ApiOutcome<T>> action, CancellationToken cancellationToken)
    {
        // A request that arrives while serve stops would wait for a barrier that never comes: it ends with the host.
        using var request = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lifetime.ApplicationStopping);
        try
        {
            await _ready.Task.WaitAsync(ControlBarrier.Timeout, request.Token).ConfigureAwait(false);
            return await barrier.RunAsync(action, request.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException || (e is OperationCanceledException && lifetime.ApplicationStopping.IsCancellationRequested))
        {
            return new ApiProblem(503, "Hypervisor unavailable", "the hypervisor's scheduler is not running (serve is starting or stopping); try again");
        }
    }

    /// <summary>At a barrier: the VM leaves this host's list and its console buffer goes (its partition first, if asked).</summary>
    private void Drop(VirtualMachine vm, bool deleteFirst)
    {
        if (deleteFirst)
        {
            system.Root.Delete(vm);
        }

        lock (_vms)
        {
            _vms.Remove(vm.Name);
        }

        console.Forget(vm);
    }

    private ManagedVm? Find(string name)
    {
        lock (_vms)
        {
            return _vms.GetValueOrDefault(name);
        }
    }

    private ManagedVm[] All()
    {
        lock (_vms)
        {
            return _vms.Values.OrderBy(m => m.Vm.Partition.Id).ToArray();
        }
    }

    private void WatchExit(VirtualMachine vm) => _ = vm.Exited.ContinueWith(t =>
    {
        logger.LogInformation("VM {Name} stopped: {Reason} (value {Value})", vm.Name, t.Result.Reason, t.Result.ExitValue);
        if (BootsAgain(vm, t.Result))
        {
            _ = RebootAfterGuestResetAsync(vm);
        }
    }, CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);

    /// <summary>Whether serve boots the VM again after this exit: a reset, when serve reboots guests and the VM has an image to boot.</summary>
    private bool BootsAgain(VirtualMachine vm, PartitionExit exit) =>
        exit.Reason == StopReason.Reset && options.Value.RebootsGuests && vm.Configuration.Image.Length > 0;

    private readonly Dictionary<VirtualMachine, TaskCompletionSource<VirtualMachine?>> _nextBoots = new(ReferenceEqualityComparer.Instance);

    /// <summary>
    /// The VM that <paramref name="m"/>'s <paramref name="old"/> booted again as, once it has; null if it did not (deleted,
    /// its name taken by another VM, the reboot failed or was held).
    /// </summary>
    private Task<VirtualMachine?> NextBootAsync(ManagedVm m, VirtualMachine old)
    {
        lock (_vms)
        {
            bool managed = _vms.TryGetValue(old.Name, out ManagedVm? current) && current == m;
            if (!managed || m.Vm != old)
            {
                return Task.FromResult(managed ? m.Vm : null);
            }

            if (!_nextBoots.TryGetValue(old, out TaskCompletionSource<VirtualMachine?>? next))
            {
                _nextBoots[old] = next = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            return next.Task;
        }
    }

    private void Booted(VirtualMachine old, VirtualMachine? next)
    {
        lock (_vms)
        {
            if (_nextBoots.Remove(old, out TaskCompletionSource<VirtualMachine?>? waiting))
            {
                waiting.TrySetResult(next);
            }
        }
    }

    /// <summary>Read at a barrier: the scheduler, the only writer of the counters, is between rounds.</summary>
    private VmInfo Describe(ManagedVm m)
    {
        VirtualMachine vm = m.Vm;
        PartitionExit? exit = vm.Exited.IsCompletedSuccessfully ? vm.Exited.Result : null;
        VcpuInfo[] vcpus = [.. Enumerable.Range(0, vm.Configuration.Processors)
            .Select(i => new VcpuInfo(i, IsLive(vm) ? VpStateName(system.Root.VirtualProcessorState(vm, i)) : "deleted"))];
        return new VmInfo(vm.Name, StateName(vm.State), vm.Partition.Id, m.Source, (long)vm.Configuration.MemoryBytes, vm.Configuration.CommandLine,
            vcpus, vm.Configuration.Devices.ToArray(), vm.Configuration.SyntheticDevices.ToArray(), Statistics(vm),
            exit is null ? null : new VmExit(ReasonName(exit.Reason), exit.ExitValue, exit.Diagnostic), m.Migration);
    }

    /// <summary>Whether the kernel still holds the VM's partition (a deleted one is gone).</summary>
    private bool IsLive(VirtualMachine vm) => system.Root.VirtualMachines.Contains(vm);

    private VmStatistics Statistics(VirtualMachine vm)
    {
        PartitionStatistics s = vm.Statistics;
        var exits = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach ((string kind, long count) in s.InterceptsByKind)
        {
            exits[kind] = count;
        }

        return new VmStatistics(s.InstructionsRetired, s.VirtualTicks(system.Kernel.Clock.Ticks), s.ChannelMessages, s.TotalIntercepts,
            exits, s.Crossings, s.InterceptTicks, console.Read(vm).Total);
    }

    public static string StateName(PartitionState state) => state switch
    {
        PartitionState.Created => "created",
        PartitionState.Running => "running",
        PartitionState.Paused => "paused",
        _ => "stopped",
    };

    private static string VpStateName(VpState state) => state switch
    {
        VpState.Runnable => "runnable",
        VpState.WaitingForRoot => "waiting-for-root",
        VpState.Halted => "halted",
        VpState.WaitingForSipi => "waiting-for-sipi",
        _ => "stopped",
    };

    private static string ReasonName(StopReason reason) => reason switch
    {
        StopReason.GuestExit => "guest-exit",
        StopReason.GuestFault => "guest-fault",
        StopReason.WorkerFailure => "worker-failure",
        StopReason.Halted => "halted",
        StopReason.InstructionLimit => "instruction-limit",
        StopReason.StoppedByRoot => "stopped-by-root",
        StopReason.PoweredOff => "powered-off",
        StopReason.Reset => "reset",
        _ => "none",
    };
}
