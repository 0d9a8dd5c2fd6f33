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

    /// <summary>The scheduling loop; returns when cancelled, or when <paramref name="untilIdle"/> and nothing can run.</summary>
    public async Task RunAsync(bool untilIdle, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            bool ranAny = false;
            long longestSlice = 0;
            foreach (Partition partition in _kernel.Partitions)
            {
                if (partition.IsRoot || partition.State != PartitionState.Running)
                {
                    continue;
                }

                foreach (VirtualProcessor vp in partition.VirtualProcessors)
                {
                    if (vp.State == VpState.Runnable && partition.State == PartitionState.Running)
                    {
                        ranAny = true;
                        long before = vp.Core.InstructionsRetired;
                        bool forwarded = await RunQuantumAsync(partition, vp, cancellationToken).ConfigureAwait(false);
                        long slice = vp.Core.InstructionsRetired - before + (forwarded ? _kernel.Options.InterceptCostTicks : 0);
                        longestSlice = Math.Max(longestSlice, slice);
                    }
                }
            }

            while (_outstanding > 0)
            {
                InterceptReply reply = await _kernel.ReplyPort.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                _outstanding--;
                Complete(reply);
            }

            // vCPUs run side by side, as on separate physical processors: a round lasts as long as its longest slice.
            _kernel.Clock.Advance(longestSlice);
            Rounds++;
            _kernel.Trace.Flush();
            RoundCompleted?.Invoke();

            if (!ranAny)
            {
                if (untilIdle)
                {
                    return;
                }

                await _work.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Runs one quantum; true when it ended by forwarding an intercept to the root.</summary>
    private async ValueTask<bool> RunQuantumAsync(Partition partition, VirtualProcessor vp, CancellationToken cancellationToken)
    {
        X86Core core = vp.Core;
        long budget = _kernel.Options.Quantum;
        while (budget > 0)
        {
            if (partition.InstructionLimit > 0)
            {
                long left = partition.InstructionLimit - core.InstructionsRetired;
                if (left <= 0)
                {
                    _kernel.StopPartition(partition, new PartitionExit(StopReason.InstructionLimit, 0, null));
                    return false;
                }

                budget = Math.Min(budget, left);
            }

            long before = core.InstructionsRetired;
            CpuExit exit = core.Run(budget);
            budget -= core.InstructionsRetired - before;
            partition.Statistics.InstructionsRetired = core.InstructionsRetired;

            switch (exit.Reason)
            {
                case CpuExitReason.BudgetExhausted:
                    break;
                case CpuExitReason.Cpuid:
                    HandleCpuid(partition, vp);
                    break;
                case CpuExitReason.IoIn:
                case CpuExitReason.IoOut:
                case CpuExitReason.MemoryIntercept:
                    await ForwardToRootAsync(partition, vp, exit, cancellationToken).ConfigureAwait(false);
                    return true;
                case CpuExitReason.Halt:
                    Halt(partition, vp);
                    return false;
                case CpuExitReason.Exception:
                    Fault(partition, vp, $"{ExceptionVector.Mnemonic(exit.Vector)} (vector {exit.Vector}, error code 0x{exit.ErrorCode:x})");
                    return false;
            }
        }

        return false;
    }

    private void HandleCpuid(Partition partition, VirtualProcessor vp)
    {
        X86Core core = vp.Core;
        uint leaf = core[Gpr.Eax];
        uint subleaf = core[Gpr.Ecx];
        (uint a, uint b, uint c, uint d) = CpuidPolicy.Query(leaf, subleaf);
        partition.Statistics.CountIntercept("cpuid");
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(core.InstructionsRetired, partition.Id, vp.Index, TraceKind.Cpuid,
                $"leaf=0x{leaf:x8} -> eax=0x{a:x8} ebx=0x{b:x8} ecx=0x{c:x8} edx=0x{d:x8}");
        }

        core.CompleteCpuid(a, b, c, d);
    }

    private async ValueTask ForwardToRootAsync(Partition partition, VirtualProcessor vp, CpuExit exit, CancellationToken cancellationToken)
    {
        InterceptKind kind = exit.Reason switch
        {
            CpuExitReason.IoIn => InterceptKind.IoPortRead,
            CpuExitReason.IoOut => InterceptKind.IoPortWrite,
            _ => InterceptKind.UnmappedGpa,
        };
        var message = new InterceptMessage(partition.Id, vp.Index, vp.Core.InstructionsRetired, kind,
            exit.Port, exit.Size, exit.Value, exit.GuestPhysicalAddress, exit.IsWrite);

        partition.Statistics.CountIntercept(kind switch
        {
            InterceptKind.IoPortRead => "io-read",
            InterceptKind.IoPortWrite => "io-write",
            _ => "unmapped-gpa",
        });
        partition.Statistics.ChannelMessages++;
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(message.VirtualTime, partition.Id, vp.Index, TraceKind.Intercept, $"{message} -> {_kernel.InterceptPort.Name}");
        }

        vp.PendingExit = exit;
        vp.State = VpState.WaitingForRoot;
        _outstanding++;
        await _kernel.InterceptPort.SendAsync(message, cancellationToken).ConfigureAwait(false);
    }

    private void Complete(InterceptReply reply)
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

        partition.Statistics.ChannelMessages++;
        X86Core core = vp.Core;
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(core.InstructionsRetired, partition.Id, vp.Index, TraceKind.Message,
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
            case InterceptAction.ExitGuest:
                // The OUT that asked to exit retires before the partition stops.
                if (vp.PendingExit.Reason == CpuExitReason.IoOut)
                {
                    core.CompleteIoOut();
                }

                _kernel.StopPartition(partition, new PartitionExit(StopReason.GuestExit, reply.Value, null));
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
            _kernel.Trace.Record(vp.Core.InstructionsRetired, partition.Id, vp.Index, TraceKind.Intercept, "hlt");
        }

        // Nothing can raise an interrupt on this platform yet, so a vCPU that halts never wakes.
        foreach (VirtualProcessor other in partition.VirtualProcessors)
        {
            if (other.State != VpState.Halted)
            {
                return;
            }
        }

        _kernel.StopPartition(partition, new PartitionExit(StopReason.Halted, 0, null));
    }

    private void Fault(Partition partition, VirtualProcessor vp, string what)
    {
        partition.Statistics.CountIntercept("fault");
        string diagnostic = $"guest fault: {what}\n{vp.Core.DescribeState()}";
        _kernel.Trace.Record(vp.Core.InstructionsRetired, partition.Id, vp.Index, TraceKind.Fault, what);
        _kernel.StopPartition(partition, new PartitionExit(StopReason.GuestFault, 0, diagnostic));
    }
}
