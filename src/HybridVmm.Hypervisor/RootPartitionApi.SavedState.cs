using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor;

/// <summary>
/// Save and restore of the kernel's synthetic state (the part of HvSaveRestorePartitionState a guest's
/// enlightenments need): synthetic MSRs, grants, event connections, the SynIC of each vCPU, HLT, and requests
/// still queued for the root. Registers and RAM go through <see cref="GetVpState"/> and guest-memory writes.
/// </summary>
public sealed partial class RootPartitionApi
{
    /// <summary>The most quanta a restored vCPU may claim to have used in its round (<see cref="VpRunState.RoundTicks"/>).</summary>
    public const int MaxRoundQuanta = 1024;

    /// <summary>The partition's synthetic state. Take it while the partition is paused or stopped.</summary>
    public EnlightenedState GetEnlightenedState(PartitionHandle partitionHandle)
    {
        Partition partition = Get(partitionHandle);
        var vps = new List<VpEnlightenedState>(partition.VirtualProcessors.Count);
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            bool halted = vp.State == VpState.Halted || (vp.HeldForRoot && vp.ReleaseState == VpState.Halted);
            // One vCPU: its place in a round is its own business (nothing else runs between its slices), and its
            // snapshot stays what it was before multiprocessor snapshots. Several: who waits for a SIPI, and where each
            // stands in the round the partition paused in (none, at a round barrier).
            VpRunState? run = partition.VirtualProcessors.Count == 1 ? null : new VpRunState(
                vp.State == VpState.WaitingForSipi,
                partition.ResumeRoundStart is null ? 0 : vp.ResumeSliceTicks,
                partition.ResumeRoundStart is null ? 0 : vp.ResumeBudget);
            vps.Add(new VpEnlightenedState(halted, vp.Synic.SaveState(), vp.Apic.SaveState(vp.ExtIntRequested), run));
        }

        return new EnlightenedState(partition.Hv.SaveState(), vps, _kernel.Enlightenments.RootRequests.PendingFor(partition));
    }

    /// <summary>
    /// Rebuilds the synthetic state of a partition that was created but not started, after its RAM has been
    /// written. Checks the saved values against the partition (pages in RAM, resource limits) first. Null on
    /// success, otherwise a one-line reason, and the caller should delete the partition.
    /// </summary>
    public string? SetEnlightenedState(PartitionHandle partitionHandle, EnlightenedState state)
    {
        Partition partition = Get(partitionHandle);
        if (partition.State != PartitionState.Created || partition.AddressSpace is not { } space)
        {
            return "synthetic state can only be restored into a partition that has not started";
        }

        if (state.VirtualProcessors.Count != partition.VirtualProcessors.Count)
        {
            return $"saved state has {state.VirtualProcessors.Count} virtual processors, the partition {partition.VirtualProcessors.Count}";
        }

        HvPartitionSavedState hv = state.Partition;
        if (hv.Gpadls.Count > GpadlTable.MaxGpadls)
        {
            return $"saved state has {hv.Gpadls.Count} GPADLs, more than {GpadlTable.MaxGpadls}";
        }

        var ids = new HashSet<uint>();
        foreach (GpadlState gpadl in hv.Gpadls)
        {
            if (gpadl.Id == 0 || !ids.Add(gpadl.Id) || gpadl.ExpectedPages is <= 0 or > GpadlTable.MaxPagesPerGpadl
                || gpadl.Pages.Count > gpadl.ExpectedPages)
            {
                return $"saved GPADL {gpadl.Id} is malformed";
            }

            foreach (uint page in gpadl.Pages)
            {
                if (!space.IsRamPage(page))
                {
                    return $"saved GPADL {gpadl.Id} grants page {page}, outside the VM's RAM";
                }
            }
        }

        if ((hv.ReferenceTscMsr & 1) != 0 && !space.IsRam(hv.ReferenceTscMsr & ~0xFFFUL, 0x1000))
        {
            return $"saved reference TSC page at 0x{hv.ReferenceTscMsr & ~0xFFFUL:x} is outside the VM's RAM";
        }

        foreach (HvPortInfo port in hv.Ports ?? [])
        {
            if (!Enum.IsDefined(port.Type) || (uint)port.TargetVp >= (uint)partition.VirtualProcessors.Count
                || (uint)port.TargetSint >= SynIc.HvMessageLayout.SintCount || (uint)port.BaseFlagNumber >= SynIc.HvMessageLayout.FlagsPerSint)
            {
                return $"saved port of connection {port.ConnectionId} is malformed";
            }
        }

        if (state.PendingRequests.Count > EnlightenedState.MaxPendingRequests)
        {
            return $"saved state has {state.PendingRequests.Count} requests for the root, more than {EnlightenedState.MaxPendingRequests}";
        }

        foreach (PendingRootRequest request in state.PendingRequests)
        {
            if ((uint)request.VpIndex >= (uint)partition.VirtualProcessors.Count || !Enum.IsDefined(request.Kind))
            {
                return "a saved request for the root is malformed";
            }
        }

        // A vCPU's place in a round: its slice's budget left is at most a quantum; the ticks it had used may pass the
        // quantum by what exits cost beyond it (a synthetic exit costs ticks but no budget), never by much more. A larger
        // claim would hold the scheduler in one slice, or move the machine's clock for every other guest.
        long quantum = _kernel.Options.Quantum, maxRoundTicks = MaxRoundQuanta * quantum;
        for (int i = 0; i < state.VirtualProcessors.Count; i++)
        {
            if (state.VirtualProcessors[i].Run is { } run && (run.SliceBudget > quantum || run.RoundTicks > maxRoundTicks))
            {
                return $"saved vCPU {i} claims {run.RoundTicks} ticks used in its round and a slice budget of {run.SliceBudget}; this hypervisor's quantum is {quantum} ticks";
            }
        }

        for (int i = 0; i < partition.VirtualProcessors.Count; i++)
        {
            if (partition.VirtualProcessors[i].Synic.RestoreState(state.VirtualProcessors[i].Synic) is { } error)
            {
                return error;
            }
        }

        for (int i = 0; i < partition.VirtualProcessors.Count; i++)
        {
            VirtualProcessor vp = partition.VirtualProcessors[i];
            if (state.VirtualProcessors[i].Apic is { } apic)
            {
                if (vp.Apic.RestoreState(apic) is { } error)
                {
                    return error;
                }

                vp.ExtIntRequested = apic.ExtIntRequested;
            }
            else
            {
                // Saved before the APIC existed: the power-on APIC, and the 8259's request as the core held it.
                vp.Apic.PowerOn();
                vp.ExtIntRequested = vp.Core.InterruptWindowRequested;
            }

            vp.SyncInterruptWindow();
        }

        partition.Hv.RestoreState(hv);
        for (int i = 0; i < partition.VirtualProcessors.Count; i++)
        {
            VirtualProcessor vp = partition.VirtualProcessors[i];
            VpRunState run = state.VirtualProcessors[i].Run ?? VpRunState.Default;
            if (run.WaitingForSipi)
            {
                // An application processor nobody has started yet runs nothing until a start-up IPI, as on its source.
                vp.HeldForRoot = false;
                vp.State = VpState.WaitingForSipi;
            }
            else
            {
                VpState afterRestore = state.VirtualProcessors[i].Halted ? VpState.Halted : VpState.Runnable;
                // Saved mid-pass with requests queued: on the source the root served them before the guest ran again.
                vp.HeldForRoot = state.PendingRequests.Count > 0;
                vp.ReleaseState = afterRestore;
                vp.State = vp.HeldForRoot ? VpState.WaitingForRoot : afterRestore;
            }

            vp.ResumeSliceTicks = run.RoundTicks;
            vp.ResumeBudget = run.SliceBudget;
        }

        _kernel.Enlightenments.RootRequests.Requeue(partition, state.PendingRequests);
        return null;
    }
}
