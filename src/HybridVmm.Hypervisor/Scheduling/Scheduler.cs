using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor.Scheduling;

/// <summary>
/// Runs every runnable vCPU for one quantum per round, in partition order. A vCPU that needs the root
/// (I/O port, unmapped GPA) posts an intercept message and stays suspended; the root serves it while the
/// other vCPUs keep running. At the end of each round the scheduler waits for every outstanding reply
/// (the round barrier), so what each guest observes, and the trace, never depends on host thread timing.
/// Halted vCPUs are idled: they take no quantum.
/// </summary>
public sealed class Scheduler
{
    private readonly HypervisorKernel _kernel;
    private readonly SemaphoreSlim _work = new(0);
    private int _outstanding;

    internal Scheduler(HypervisorKernel kernel) => _kernel = kernel;

    /// <summary>Raised on the scheduler thread at each round barrier, after the trace is flushed.</summary>
    public event Action? RoundCompleted;

    public long Rounds { get; private set; }

    /// <summary>Tells an idle scheduler that something changed (a partition started, resumed or stopped).</summary>
    public void Wake() => _work.Release();

    /// <summary>
    /// The scheduling loop; returns when cancelled, or when <paramref name="untilIdle"/> and nothing can run.
    /// A round gives each vCPU a quantum of virtual ticks: its instructions plus
    /// <see cref="HypervisorOptions.InterceptCostTicks"/> per intercept served by the root. A round is made of
    /// passes; each pass runs every vCPU that still has budget and ends at the barrier, where replies are
    /// applied, so a vCPU resumed by the root continues in the same round. The virtual clock then advances by
    /// the longest slice, as if every vCPU had its own physical processor.
    /// </summary>
    public async Task RunAsync(bool untilIdle, CancellationToken cancellationToken, Func<bool>? stopWhen = null)
    {
        long quantum = _kernel.Options.Quantum;
        while (!cancellationToken.IsCancellationRequested)
        {
            _kernel.RoundStartTicks = _kernel.Clock.Ticks;
            IReadOnlyList<Partition> partitions = _kernel.Partitions;
            foreach (Partition partition in partitions)
            {
                foreach (VirtualProcessor vp in partition.VirtualProcessors)
                {
                    vp.SliceTicks = 0;
                }
            }

            bool ranAny = false;
            bool ranThisPass;
            do
            {
                ranThisPass = false;
                foreach (Partition partition in partitions)
                {
                    foreach (VirtualProcessor vp in partition.VirtualProcessors)
                    {
                        if (!partition.IsRoot && partition.State == PartitionState.Running
                            && vp.State == VpState.Runnable && vp.SliceTicks < quantum)
                        {
                            ranThisPass = true;
                            await RunSliceAsync(partition, vp, quantum - vp.SliceTicks, cancellationToken).ConfigureAwait(false);
                        }
                    }
                }

                while (_outstanding > 0)
                {
                    InterceptReply reply = await _kernel.ReplyPort.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                    _outstanding--;
                    Complete(reply);
                }

                // Guests' VMBus messages and signals go to the root once every vCPU is stopped and every worker
                // idle, so nothing runs beside the VMBus server; what it posts back raises SynIC interrupts,
                // which wake halted vCPUs (Hypercalls/Enlightenments.cs).
                await _kernel.Enlightenments.FlushToRootAsync(cancellationToken).ConfigureAwait(false);

                ranThisPass |= Hypercalls.Enlightenments.WakeHalted(partitions);

                ranAny |= ranThisPass;
            }
            while (ranThisPass);

            long longest = 0;
            foreach (Partition partition in partitions)
            {
                foreach (VirtualProcessor vp in partition.VirtualProcessors)
                {
                    longest = Math.Max(longest, vp.SliceTicks);
                }
            }

            _kernel.Clock.Advance(longest);
            Rounds++;
            _kernel.Trace.Flush();
            RoundCompleted?.Invoke();

            if (stopWhen?.Invoke() == true)
            {
                return;
            }

            if (!ranAny)
            {
                if (untilIdle)
                {
                    // Nothing can raise an interrupt any more: vCPUs halted with IF=1 will never wake.
                    StopIdleHalted(partitions);
                    _kernel.Trace.Flush();
                    return;
                }

                await _work.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Runs a vCPU for up to <paramref name="budget"/> ticks, or until it needs the root, halts or faults.</summary>
    private async ValueTask RunSliceAsync(Partition partition, VirtualProcessor vp, long budget, CancellationToken cancellationToken)
    {
        X86Core core = vp.Core;
        while (budget > 0)
        {
            if (partition.InstructionLimit > 0)
            {
                long left = partition.InstructionLimit - core.InstructionsRetired;
                if (left <= 0)
                {
                    _kernel.StopPartition(partition, new PartitionExit(StopReason.InstructionLimit, 0, null));
                    return;
                }

                budget = Math.Min(budget, left);
            }

            if (partition.BreakAtInstruction > 0)
            {
                long left = partition.BreakAtInstruction - core.InstructionsRetired;
                if (left <= 0)
                {
                    _kernel.ReachBreakpoint(partition);
                    return;
                }

                budget = Math.Min(budget, left);
            }

            long before = core.InstructionsRetired;
            CpuExit exit = core.Run(budget);
            long retired = core.InstructionsRetired - before;
            budget -= retired;
            vp.SliceTicks += retired;
            partition.Statistics.InstructionsRetired = core.InstructionsRetired;

            switch (exit.Reason)
            {
                case CpuExitReason.BudgetExhausted:
                    break;
                case CpuExitReason.Cpuid:
                    HandleCpuid(partition, vp);
                    break;
                case CpuExitReason.MemoryIntercept when exit.IsWrite && ResolveWriteProtection(partition, vp, exit.GuestPhysicalAddress):
                    break;
                case CpuExitReason.IoIn:
                case CpuExitReason.IoOut:
                case CpuExitReason.MemoryIntercept:
                    InterceptCost cost = _kernel.Options.Costs.For(_kernel.Options.Hosting);
                    partition.Statistics.Crossings += cost.Crossings;
                    partition.Statistics.InterceptTicks += cost.Ticks;
                    if (_kernel.InKernelDevices.TryGetValue(partition.Id, out Func<InterceptMessage, InterceptReply>? deviceModel))
                    {
                        // Type 1: the kernel emulates the device itself and the vCPU goes on in this slice.
                        HandleInKernel(partition, vp, exit, deviceModel);
                        vp.SliceTicks += cost.Ticks;
                        budget -= cost.Ticks;
                        if (vp.State != VpState.Runnable || partition.State != PartitionState.Running)
                        {
                            return;
                        }

                        break;
                    }

                    await ForwardToRootAsync(partition, vp, exit, cancellationToken).ConfigureAwait(false);
                    vp.SliceTicks += cost.Ticks;
                    return;
                case CpuExitReason.Halt:
                    Halt(partition, vp);
                    return;
                case CpuExitReason.Exception:
                    Fault(partition, vp, $"{ExceptionVector.Mnemonic(exit.Vector)} (vector {exit.Vector}, error code 0x{exit.ErrorCode:x})");
                    return;
                case CpuExitReason.TripleFault:
                    Fault(partition, vp, $"triple fault: {ExceptionVector.Mnemonic(exit.Vector)} (vector {exit.Vector}) could not be delivered, nor #GP, nor #DF (no usable IDT gate)");
                    return;
                case CpuExitReason.Rdmsr:
                case CpuExitReason.Wrmsr:
                case CpuExitReason.Vmcall:
                    vp.SliceTicks += _kernel.Enlightenments.Handle(partition, vp, exit);
                    break;
            }
        }
    }

    /// <summary>
    /// A write to RAM the kernel itself write-protected (a copy-on-write share or dirty-page tracking) is the
    /// kernel's own business: it fixes the mapping and the instruction re-executes, with no message to the root.
    /// </summary>
    private bool ResolveWriteProtection(Partition partition, VirtualProcessor vp, uint gpa)
    {
        if (partition.AddressSpace is not { } space || !space.TryResolveWriteFault(gpa, out bool copied))
        {
            return false;
        }

        string kind = copied ? "cow-copy" : "dirty-log";
        partition.Statistics.CountIntercept(kind);
        if (_kernel.Trace.Enabled && copied)
        {
            _kernel.Trace.Record(_kernel.Now(vp), partition.Id, vp.Index, TraceKind.Intercept, $"{kind} gpa=0x{gpa & ~0xFFFu:x8}");
        }

        return true;
    }

    private void HandleCpuid(Partition partition, VirtualProcessor vp)
    {
        X86Core core = vp.Core;
        uint leaf = core[Gpr.Eax];
        uint subleaf = core[Gpr.Ecx];
        (uint a, uint b, uint c, uint d) = CpuidPolicy.Query(leaf, subleaf, (ulong)partition.Hv.Privileges);
        partition.Statistics.CountIntercept("cpuid");
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(_kernel.Now(vp), partition.Id, vp.Index, TraceKind.Cpuid,
                $"leaf=0x{leaf:x8} -> eax=0x{a:x8} ebx=0x{b:x8} ecx=0x{c:x8} edx=0x{d:x8}");
        }

        core.CompleteCpuid(a, b, c, d);
    }

    private void HandleInKernel(Partition partition, VirtualProcessor vp, CpuExit exit, Func<InterceptMessage, InterceptReply> deviceModel)
    {
        InterceptMessage message = ToMessage(partition, vp, exit);
        CountIntercept(partition, message.Kind);
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(message.VirtualTime, partition.Id, vp.Index, TraceKind.Intercept, $"{message} -> in-kernel device model");
        }

        vp.PendingExit = exit;
        vp.PendingTime = message.VirtualTime;
        vp.State = VpState.WaitingForRoot;
        Complete(deviceModel(message), countMessage: false);
    }

    private InterceptMessage ToMessage(Partition partition, VirtualProcessor vp, CpuExit exit)
    {
        InterceptKind kind = exit.Reason switch
        {
            CpuExitReason.IoIn => InterceptKind.IoPortRead,
            CpuExitReason.IoOut => InterceptKind.IoPortWrite,
            _ => InterceptKind.UnmappedGpa,
        };
        return new InterceptMessage(partition.Id, vp.Index, _kernel.Now(vp), kind,
            exit.Port, exit.Size, exit.Value, exit.GuestPhysicalAddress, exit.IsWrite);
    }

    private static void CountIntercept(Partition partition, InterceptKind kind) =>
        partition.Statistics.CountIntercept(kind switch
        {
            InterceptKind.IoPortRead => "io-read",
            InterceptKind.IoPortWrite => "io-write",
            _ => "unmapped-gpa",
        });

    private async ValueTask ForwardToRootAsync(Partition partition, VirtualProcessor vp, CpuExit exit, CancellationToken cancellationToken)
    {
        InterceptMessage message = ToMessage(partition, vp, exit);
        CountIntercept(partition, message.Kind);
        partition.Statistics.ChannelMessages++;
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(message.VirtualTime, partition.Id, vp.Index, TraceKind.Intercept, $"{message} -> {_kernel.InterceptPort.Name}");
        }

        vp.PendingExit = exit;
        vp.PendingTime = message.VirtualTime;
        vp.State = VpState.WaitingForRoot;
        _outstanding++;
        await _kernel.InterceptPort.SendAsync(message, cancellationToken).ConfigureAwait(false);
    }

    private void Complete(InterceptReply reply, bool countMessage = true)
    {
        Partition? partition = _kernel.Find(reply.PartitionId);
        if (partition is null || reply.VpIndex >= partition.VirtualProcessors.Count)
        {
            return;
        }

        VirtualProcessor vp = partition.VirtualProcessors[reply.VpIndex];
        if (vp.State != VpState.WaitingForRoot)
        {
            return;
        }

        if (countMessage)
        {
            partition.Statistics.ChannelMessages++;
        }

        X86Core core = vp.Core;
        if (_kernel.Trace.Enabled && countMessage)
        {
            _kernel.Trace.Record(vp.PendingTime, partition.Id, vp.Index, TraceKind.Message,
                reply.Action == InterceptAction.Resume && vp.PendingExit.Reason == CpuExitReason.IoIn
                    ? $"reply resume value=0x{reply.Value:x}"
                    : $"reply {reply.Action.ToString().ToLowerInvariant()}");
        }

        switch (reply.Action)
        {
            case InterceptAction.Resume when vp.PendingExit.Reason == CpuExitReason.IoIn:
                core.CompleteIoIn(reply.Value);
                vp.State = VpState.Runnable;
                break;
            case InterceptAction.Resume when vp.PendingExit.Reason == CpuExitReason.IoOut:
                core.CompleteIoOut();
                vp.State = VpState.Runnable;
                break;
            case InterceptAction.Pause when vp.PendingExit.Reason == CpuExitReason.IoOut:
                core.CompleteIoOut();
                vp.State = VpState.Runnable;
                partition.State = PartitionState.Paused;
                _kernel.Trace.Record(vp.PendingTime, partition.Id, -1, TraceKind.Lifecycle, "paused at the guest's request");
                break;
            case InterceptAction.ExitGuest:
                // The OUT that asked to exit retires before the partition stops.
                if (vp.PendingExit.Reason == CpuExitReason.IoOut)
                {
                    core.CompleteIoOut();
                }

                _kernel.StopPartition(partition, new PartitionExit(StopReason.GuestExit, reply.Value, null));
                break;
            case InterceptAction.WorkerFailed:
                _kernel.Trace.Record(vp.PendingTime, partition.Id, vp.Index, TraceKind.Fault, reply.Reason ?? "worker failed");
                _kernel.StopPartition(partition, new PartitionExit(StopReason.WorkerFailure, 0, reply.Reason));
                break;
            default:
                Fault(partition, vp, reply.Reason ?? "the root partition could not complete the intercept");
                break;
        }
    }

    private void Halt(Partition partition, VirtualProcessor vp)
    {
        vp.State = VpState.Halted;
        partition.Statistics.CountIntercept("hlt");
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(_kernel.Now(vp), partition.Id, vp.Index, TraceKind.Intercept, "hlt");
        }

        if (vp.Core.HasDeliverableInterrupt)
        {
            vp.State = VpState.Runnable; // an interrupt is already waiting: HLT falls through to it
            return;
        }

        // A vCPU halted with IF=0 can never wake; with IF=1 a SynIC interrupt may still wake it.
        foreach (VirtualProcessor other in partition.VirtualProcessors)
        {
            if (other.State != VpState.Halted || other.Core.InterruptsEnabled)
            {
                return;
            }
        }

        _kernel.StopPartition(partition, new PartitionExit(StopReason.Halted, 0, null));
    }

    private void StopIdleHalted(IReadOnlyList<Partition> partitions)
    {
        foreach (Partition partition in partitions)
        {
            if (partition.IsRoot || partition.State != PartitionState.Running)
            {
                continue;
            }

            bool allHalted = true;
            foreach (VirtualProcessor vp in partition.VirtualProcessors)
            {
                allHalted &= vp.State == VpState.Halted;
            }

            if (allHalted)
            {
                _kernel.StopPartition(partition, new PartitionExit(StopReason.Halted, 0, null));
            }
        }
    }

    private void Fault(Partition partition, VirtualProcessor vp, string what)
    {
        partition.Statistics.CountIntercept("fault");
        string diagnostic = $"guest fault: {what}\n{vp.Core.DescribeState()}";
        _kernel.Trace.Record(_kernel.Now(vp), partition.Id, vp.Index, TraceKind.Fault, what);
        _kernel.StopPartition(partition, new PartitionExit(StopReason.GuestFault, 0, diagnostic));
    }
}
