using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>
/// Decides what each VM exit means and who serves it: the kernel itself (CPUID, its own write protection,
/// HLT, synthetic MSRs and hypercalls, an in-kernel device model under Type 1) or the root partition (I/O
/// ports, MMIO, device timers), through <see cref="RootChannel"/>. Faults stop only the partition that made them.
/// </summary>
/// <summary>What serving an exit cost the vCPU: ticks of virtual time, ticks taken from its quantum, and whether it runs on.</summary>
internal readonly record struct ExitOutcome(long SliceTicks, long BudgetTicks, bool Continue)
{
    public static ExitOutcome Go => new(0, 0, true);

    public static ExitOutcome Stop => new(0, 0, false);
}

internal sealed class ExitDispatcher(PartitionTable partitions, InterceptCost cost, IReadOnlyDictionary<int, Func<InterceptMessage, InterceptReply>> inKernelDevices,
    Enlightened.Enlightenments enlightenments, RootChannel root, InterceptCompletion completion)
{
    /// <summary>Serves one exit.</summary>
    public async ValueTask<ExitOutcome> DispatchAsync(Partition partition, VirtualProcessor vp, CpuExit exit, CancellationToken cancellationToken)
    {
        switch (exit.Reason)
        {
            case CpuExitReason.BudgetExhausted:
                return ExitOutcome.Go;
            case CpuExitReason.Cpuid:
                // CPUID exits unconditionally under VMX and SVM; the kernel answers it, at the cost of any exit it serves.
                HandleCpuid(partition, vp);
                return new ExitOutcome(enlightenments.ExitCostTicks, 0, true);
            case CpuExitReason.ControlRegisterWrite:
                // A paging-mode bit the kernel owns changed (ControlRegisterPolicy): served here, like CPUID.
                partition.Statistics.CountIntercept("cr-write");
                if (partitions.Trace.Enabled)
                {
                    partitions.Trace.Record(partitions.Now(vp), partition.Id, vp.Index, TraceKind.Intercept,
                        $"cr-write cr{exit.Vector}=0x{exit.Value:x8} (was 0x{exit.ErrorCode:x8})");
                }

                return new ExitOutcome(enlightenments.ExitCostTicks, 0, true);
            case CpuExitReason.MemoryIntercept when exit.IsWrite && ResolveWriteProtection(partition, vp, exit.GuestPhysicalAddress) is bool resolved:
                return resolved ? ExitOutcome.Go : ExitOutcome.Stop;
            case CpuExitReason.MemoryIntercept when vp.Apic.Claims(exit.GuestPhysicalAddress):
                // The local APIC's page is the kernel's own (as on Hyper-V): served here, never routed to the root,
                // except the EOI of a level-triggered interrupt, which the root's I/O APIC must hear of.
                ExitOutcome served = ApicAccess.Serve(partitions, partition, vp, exit, enlightenments.ExitCostTicks);
                if (served.Continue && vp.Apic.TakeLevelTriggeredEoi() is byte eoi)
                {
                    var message = new InterceptMessage(partition.Id, vp.Index, partitions.Now(vp), InterceptKind.ApicEoi, 0, 0, eoi, 0, false, partition.ClockOffset);
                    ExitOutcome root = await ToDeviceModelAsync(partition, vp, default, message, cancellationToken).ConfigureAwait(false);
                    return root with { SliceTicks = root.SliceTicks + served.SliceTicks };
                }

                return served;
            case CpuExitReason.IoIn:
            case CpuExitReason.IoOut:
            case CpuExitReason.MemoryIntercept:
                return await ToDeviceModelAsync(partition, vp, exit, ToMessage(partition, vp, exit), cancellationToken).ConfigureAwait(false);
            case CpuExitReason.Halt:
                Halt(partition, vp);
                return ExitOutcome.Stop;
            case CpuExitReason.InterruptWindow:
                vp.ExtIntRequested = false; // the core consumed the request: the 8259 acknowledges now
                return await ToDeviceModelAsync(partition, vp, exit,
                    new InterceptMessage(partition.Id, vp.Index, partitions.Now(vp), InterceptKind.InterruptWindow, 0, 0, 0, 0, false, partition.ClockOffset), cancellationToken).ConfigureAwait(false);
            case CpuExitReason.Exception:
                partitions.Fault(partition, vp, $"{ExceptionVector.Mnemonic(exit.Vector)} (vector {exit.Vector}, error code 0x{exit.ErrorCode:x})");
                return ExitOutcome.Stop;
            case CpuExitReason.TripleFault:
                partitions.TripleFault(partition, vp, $"{ExceptionVector.Mnemonic(exit.Vector)} (vector {exit.Vector}) could not be delivered, nor #GP, nor #DF (no usable IDT gate)");
                return ExitOutcome.Stop;
            case CpuExitReason.Rdmsr:
            case CpuExitReason.Wrmsr:
            case CpuExitReason.Vmcall:
                // Served in the kernel: the slice goes on; the cost counts as virtual time but not against the quantum.
                return new ExitOutcome(enlightenments.Handle(partition, vp, exit), 0, true);
            default:
                return ExitOutcome.Go;
        }
    }

    /// <summary>
    /// The boot vCPU reached the deadline the root's devices armed: their timer intercept, with no instruction pending.
    /// A halted vCPU (<paramref name="halted"/>) stays halted after it unless the root made an interrupt deliverable.
    /// </summary>
    public ValueTask<ExitOutcome> DeviceTimerAsync(Partition partition, VirtualProcessor vp, CancellationToken cancellationToken, bool halted = false)
    {
        partition.DeviceTimerDeadline = null;
        var message = new InterceptMessage(partition.Id, vp.Index, partitions.Now(vp), InterceptKind.DeviceTimer, 0, 0, 0, 0, false, partition.ClockOffset);
        return ToDeviceModelAsync(partition, vp, halted ? new CpuExit(CpuExitReason.Halt) : default, message, cancellationToken);
    }

    private async ValueTask<ExitOutcome> ToDeviceModelAsync(Partition partition, VirtualProcessor vp, CpuExit exit, InterceptMessage message, CancellationToken cancellationToken)
    {
        partition.Statistics.Crossings += cost.Crossings;
        partition.Statistics.InterceptTicks += cost.Ticks;
        CountIntercept(partition, message.Kind);
        if (inKernelDevices.TryGetValue(partition.Id, out Func<InterceptMessage, InterceptReply>? deviceModel))
        {
            // Type 1: the kernel emulates the device itself and the vCPU goes on in this slice.
            if (partitions.Trace.Enabled)
            {
                partitions.Trace.Record(message.VirtualTime, partition.Id, vp.Index, TraceKind.Intercept, $"{message} -> in-kernel device model");
            }

            vp.PendingExit = exit;
            vp.PendingTime = message.VirtualTime;
            vp.State = VpState.WaitingForRoot;
            completion.Complete(deviceModel(message), countMessage: false);
            return new ExitOutcome(cost.Ticks, cost.Ticks, vp.State == VpState.Runnable && partition.State == PartitionState.Running);
        }

        await root.ForwardAsync(partition, vp, exit, message, cancellationToken).ConfigureAwait(false);
        return new ExitOutcome(cost.Ticks, cost.Ticks, false);
    }

    /// <summary>
    /// A write to RAM the kernel itself write-protected (a copy-on-write share or dirty-page tracking) is the
    /// kernel's own business: it fixes the mapping and the instruction re-executes, with no message to the root
    /// (true). A shared page whose copy finds the host's memory exhausted stops this guest alone, saying so (false).
    /// Null when the write is not to RAM: the root's device model takes it.
    /// </summary>
    private bool? ResolveWriteProtection(Partition partition, VirtualProcessor vp, ulong gpa)
    {
        if (partition.AddressSpace is not { } space)
        {
            return null;
        }

        if (!space.TryResolveWriteFault(gpa, out bool copied, out bool exhausted))
        {
            if (!exhausted)
            {
                return null;
            }

            partitions.Fault(partition, vp, $"host memory exhausted: guest-physical page 0x{gpa & ~0xFFFUL:x8} is shared copy-on-write, " +
                "and the host has no free frame for this guest's own copy (give the host more memory: HostMemory, --host-memory)");
            return false;
        }

        string kind = copied ? "cow-copy" : "dirty-log";
        partition.Statistics.CountIntercept(kind);
        if (partitions.Trace.Enabled && copied)
        {
            partitions.Trace.Record(partitions.Now(vp), partition.Id, vp.Index, TraceKind.Intercept, $"{kind} gpa=0x{gpa & ~0xFFFUL:x8}");
        }

        return true;
    }

    private void HandleCpuid(Partition partition, VirtualProcessor vp)
    {
        X86Core core = vp.Core;
        uint leaf = core[Gpr.Eax];
        uint subleaf = core[Gpr.Ecx];
        (uint a, uint b, uint c, uint d) = CpuidPolicy.Query(leaf, subleaf, (ulong)partition.Hv.Privileges);
        if (leaf == 1)
        {
            b |= (uint)vp.Index << 24; // the initial APIC ID
            if (!vp.Apic.GloballyEnabled)
            {
                d &= ~CpuidPolicy.ApicFeature; // IA32_APIC_BASE[11] clear hides the APIC from CPUID (SDM Vol. 3A, 11.4.3)
            }
        }

        partition.Statistics.CountIntercept("cpuid");
        if (partitions.Trace.Enabled)
        {
            partitions.Trace.Record(partitions.Now(vp), partition.Id, vp.Index, TraceKind.Cpuid,
                $"leaf=0x{leaf:x8} -> eax=0x{a:x8} ebx=0x{b:x8} ecx=0x{c:x8} edx=0x{d:x8}");
        }

        core.CompleteCpuid(a, b, c, d);
    }

    private InterceptMessage ToMessage(Partition partition, VirtualProcessor vp, CpuExit exit)
    {
        InterceptKind kind = exit.Reason switch
        {
            CpuExitReason.IoIn => InterceptKind.IoPortRead,
            CpuExitReason.IoOut => InterceptKind.IoPortWrite,
            _ => InterceptKind.UnmappedGpa,
        };
        return new InterceptMessage(partition.Id, vp.Index, partitions.Now(vp), kind,
            exit.Port, exit.Size, exit.Value, exit.GuestPhysicalAddress, exit.IsWrite, partition.ClockOffset);
    }

    private static void CountIntercept(Partition partition, InterceptKind kind) =>
        partition.Statistics.CountIntercept(kind switch
        {
            InterceptKind.IoPortRead => "io-read",
            InterceptKind.IoPortWrite => "io-write",
            InterceptKind.DeviceTimer => "device-timer",
            InterceptKind.InterruptWindow => "interrupt-window",
            InterceptKind.ApicEoi => "apic-eoi",
            _ => "unmapped-gpa",
        });

    private void Halt(Partition partition, VirtualProcessor vp)
    {
        vp.State = VpState.Halted;
        vp.Halts++;
        partition.Statistics.CountIntercept("hlt");
        if (partitions.Trace.Enabled)
        {
            partitions.Trace.Record(partitions.Now(vp), partition.Id, vp.Index, TraceKind.Intercept, "hlt");
        }

        if (vp.Core.HasDeliverableInterrupt)
        {
            vp.State = VpState.Runnable; // an interrupt is already waiting: HLT falls through to it
            return;
        }

        // A vCPU halted with IF=0 can never wake; with IF=1 an interrupt may still wake it. One waiting for a start-up
        // IPI wakes only if another sends it one.
        foreach (VirtualProcessor other in partition.VirtualProcessors)
        {
            if (other.State != VpState.WaitingForSipi && (other.State != VpState.Halted || other.Core.InterruptsEnabled))
            {
                return;
            }
        }

        partitions.Stop(partition, new PartitionExit(StopReason.Halted, 0, null));
    }
}
