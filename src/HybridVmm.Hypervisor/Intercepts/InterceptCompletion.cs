using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Interrupts;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>
/// Applies the root's answer to an intercept: completes the suspended instruction (IN with its value, OUT, an
/// MMIO read with its value or an MMIO write) and resumes the vCPU, or pauses, exits, powers off or faults the
/// partition. Interrupts the root asserted while serving are delivered first, so the vCPU sees them at once.
/// </summary>
internal sealed class InterceptCompletion(PartitionTable partitions, InterruptQueue interrupts)
{
    /// <summary>Delivers the interrupts the root asserted into their vCPUs; call on the scheduler thread only (or when none runs).</summary>
    public void DeliverPostedInterrupts() => interrupts.Drain(posted =>
    {
        if (partitions.Find(posted.PartitionId) is not { State: not PartitionState.Stopped } partition || posted.VpIndex >= partition.VirtualProcessors.Count)
        {
            return;
        }

        VirtualProcessor vp = partition.VirtualProcessors[posted.VpIndex];
        string what;
        switch (posted.Kind)
        {
            case PostedKind.Fixed:
                vp.Core.RequestInterrupt(posted.Vector);
                what = $"root asserted interrupt vector=0x{posted.Vector:x2}";
                break;
            case PostedKind.Msi:
                what = DeliverMsi(partition, posted.Address, posted.Data, out vp);
                break;
            case PostedKind.Sint:
                what = $"root asserted sint={posted.Vector}{(vp.Synic.AssertSint(posted.Vector) ? "" : " (masked or SynIC disabled: lost)")}";
                break;
            case PostedKind.ConnectPort:
                Hv1.HvPortInfo port = posted.Port!;
                what = $"root connected {port.Type.ToString().ToLowerInvariant()} port connection=0x{port.ConnectionId:x} vp={port.TargetVp} sint={port.TargetSint}"
                    + (port.Type == Hv1.HvPortType.Event ? $" flag={port.BaseFlagNumber}" : "")
                    + (partition.Hv.AddPort(port) ? "" : " -> refused (connection in use)");
                break;
            case PostedKind.DisconnectPort:
                what = $"root disconnected port connection=0x{posted.Address:x}{(partition.Hv.RemovePort(posted.Address) ? "" : " (none)")}";
                break;
            default:
                bool requested = posted.Kind == PostedKind.WindowRequested;
                if (vp.ExtIntRequested == requested)
                {
                    return; // no change: nothing to trace
                }

                // The 8259's INTR reaches the core through the APIC's LINT0 (virtual-wire mode).
                vp.ExtIntRequested = requested;
                vp.SyncInterruptWindow();
                what = requested ? "root requested interrupt window" : "root withdrew interrupt window";
                break;
        }

        partitions.Trace.Record(partitions.Now(vp), partition.Id, vp.Index, TraceKind.Message, what);
    });

    /// <summary>
    /// Delivers an interrupt message in the MSI format (SDM Vol. 3A, 11.11): address bits 19:12 the destination and bit 2
    /// logical mode; data bits 7:0 the vector, 10:8 the delivery mode and bit 15 the trigger. Fixed goes to every APIC
    /// the destination matches, lowest priority to the matching one with the lowest processor priority (the lowest
    /// index among equals, so the choice is deterministic), NMI to every match. SMI, INIT, SIPI and ExtINT messages are
    /// not simulated and are dropped, as is a message whose address is not in the APIC range 0xFEExxxxx.
    /// </summary>
    private static string DeliverMsi(Partition partition, uint address, uint data, out VirtualProcessor traced)
    {
        traced = partition.VirtualProcessors[0];
        byte vector = (byte)data, destination = (byte)(address >> 12);
        uint mode = (data >> 8) & 7;
        bool logical = (address & 4) != 0, level = (data & 0x8000) != 0;
        string message = $"msi address=0x{address:x8} data=0x{data:x4}";
        if ((address & 0xFFF0_0000) != 0xFEE0_0000 || mode is not (0 or 1 or 4))
        {
            return $"{message}: dropped (not a fixed, lowest-priority or NMI message to the APIC range)";
        }

        var targets = new List<VirtualProcessor>();
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            if (vp.Apic.GloballyEnabled && vp.Apic.MatchesDestination(destination, logical))
            {
                targets.Add(vp);
            }
        }

        if (mode == 1 && targets.Count > 1)
        {
            VirtualProcessor lowest = targets[0];
            foreach (VirtualProcessor vp in targets)
            {
                if (vp.Apic.ProcessorPriority < lowest.Apic.ProcessorPriority) lowest = vp;
            }

            targets = [lowest];
        }

        foreach (VirtualProcessor vp in targets)
        {
            if (mode == 4) vp.Core.RequestNmi();
            else vp.Apic.Accept(vector, level);
        }

        if (targets.Count == 0)
        {
            return $"{message}: no APIC accepted it";
        }

        traced = targets[0];
        return $"{message} -> vector=0x{vector:x2} to {targets.Count} vcpu(s)";
    }

    public void Complete(InterceptReply reply, bool countMessage = true)
    {
        DeliverPostedInterrupts();
        Partition? partition = partitions.Find(reply.PartitionId);
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

        TraceRecorder trace = partitions.Trace;
        CpuExit pending = vp.PendingExit;
        bool isRead = pending.Reason == CpuExitReason.IoIn || (pending.Reason == CpuExitReason.MemoryIntercept && !pending.IsWrite);
        bool inject = reply.Action == InterceptAction.Resume && reply.InjectVector is not null && pending.Reason == CpuExitReason.InterruptWindow;
        if (trace.Enabled && countMessage)
        {
            trace.Record(vp.PendingTime, partition.Id, vp.Index, TraceKind.Message,
                reply.Action == InterceptAction.Resume && isRead
                    ? $"reply resume value=0x{reply.Value:x}"
                    : inject ? $"reply resume inject vector=0x{reply.InjectVector!.Value:x2}"
                    : $"reply {reply.Action.ToString().ToLowerInvariant()}");
        }

        if (reply.Action is InterceptAction.Resume or InterceptAction.Pause && pending.Reason == CpuExitReason.MemoryIntercept
            && !vp.Core.CanCompleteMemoryIntercept)
        {
            // A device answered an access the core cannot complete with data: an instruction fetch from MMIO, or the
            // write probe of INS, PUSHA, SGDT/SIDT or CMPXCHG8B into MMIO. Only this guest stops.
            partitions.Fault(partition, vp, $"{(pending.IsWrite ? "write to" : "read from")} MMIO at 0x{pending.GuestPhysicalAddress:x8} by an instruction that cannot complete a device access (an instruction fetch, or INS, PUSHA, SGDT, SIDT or CMPXCHG8B)");
            return;
        }

        switch (reply.Action)
        {
            case InterceptAction.Resume:
                Retire(vp, reply.Value);
                if (inject)
                {
                    vp.Core.InjectExternalInterrupt(reply.InjectVector!.Value);
                }

                // A timer that fired while the vCPU was halted wakes it only if an interrupt it can take is now there.
                vp.State = pending.Reason == CpuExitReason.Halt && !vp.Core.HasDeliverableInterrupt ? VpState.Halted : VpState.Runnable;
                break;
            case InterceptAction.Pause:
                Retire(vp, reply.Value);
                vp.State = VpState.Runnable;
                partition.State = PartitionState.Paused;
                trace.Record(vp.PendingTime, partition.Id, -1, TraceKind.Lifecycle, "paused at the guest's request");
                break;
            case InterceptAction.ExitGuest:
            case InterceptAction.PowerOff:
            case InterceptAction.Reset:
                // The write that asked to stop retires before the partition stops.
                if (pending.Reason == CpuExitReason.IoOut || (pending.Reason == CpuExitReason.MemoryIntercept && pending.IsWrite))
                {
                    Retire(vp, 0);
                }

                partitions.Stop(partition, reply.Action switch
                {
                    InterceptAction.ExitGuest => new PartitionExit(StopReason.GuestExit, reply.Value, null),
                    InterceptAction.PowerOff => new PartitionExit(StopReason.PoweredOff, 0, null),
                    _ => new PartitionExit(StopReason.Reset, 0, null),
                });
                break;
            case InterceptAction.WorkerFailed:
                trace.Record(vp.PendingTime, partition.Id, vp.Index, TraceKind.Fault, reply.Reason ?? "worker failed");
                partitions.Stop(partition, new PartitionExit(StopReason.WorkerFailure, 0, reply.Reason));
                break;
            default:
                partitions.Fault(partition, vp, reply.Reason ?? "the root partition could not complete the intercept");
                break;
        }
    }

    /// <summary>Completes the instruction the vCPU is suspended in; a device-timer intercept has none.</summary>
    private static void Retire(VirtualProcessor vp, uint value)
    {
        X86Core core = vp.Core;
        switch (vp.PendingExit.Reason)
        {
            case CpuExitReason.IoIn:
                core.CompleteIoIn(value);
                break;
            case CpuExitReason.IoOut:
                core.CompleteIoOut();
                break;
            case CpuExitReason.MemoryIntercept when core.CanCompleteMemoryIntercept:
                core.CompleteMemoryIntercept(value);
                break;
        }
    }
}
