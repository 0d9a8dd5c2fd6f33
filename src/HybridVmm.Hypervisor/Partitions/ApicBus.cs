using HybridVmm.Hypervisor.Apic;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// The system bus between one partition's local APICs: it carries the interprocessor interrupts a write to ICR sends
/// (SDM Vol. 3A, 11.6). The vCPUs run one at a time on the scheduler's thread, so an IPI reaches its targets at once,
/// at the sender's instruction, the same in every run.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Destinations: the shorthands self, all including self and all excluding self, or the destination field in
/// physical mode (an APIC ID, 0xFF for all) or logical mode (flat or cluster, each APIC's LDR and DFR).</item>
/// <item>Fixed: every target's IRR. Lowest priority: the target with the lowest processor priority, the lowest index
/// among equals. NMI: every target's NMI.</item>
/// <item>INIT (level assert): the target's APIC resets (ID and IA32_APIC_BASE kept), its core takes the INIT state and it
/// waits for a start-up IPI. INIT level de-assert is ignored, as by processors since the Pentium 4. An INIT to the
/// sender itself is ignored (this platform does not reset a running bootstrap processor).</item>
/// <item>Start-up (SIPI): a target waiting for it starts in real mode at vector × 0x1000 (CS = vector × 0x100, IP = 0),
/// at the sender's point in the round (its virtual time does not start before the IPI that started it); a target not
/// waiting ignores it.</item>
/// <item>SMI and the reserved modes reach nobody.</item>
/// </list>
/// </remarks>
internal sealed class ApicBus(Partition partition, PartitionTable table, uint processorSignature) : IApicBus
{
    private const uint Fixed = 0, LowestPriority = 1, Nmi = 4, Init = 5, Startup = 6;

    public void Send(LocalApic from, uint icrLow, byte destination)
    {
        VirtualProcessor? source = null;
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            if (vp.Apic == from) source = vp;
        }

        if (source is null)
        {
            return;
        }

        uint mode = (icrLow >> 8) & 7, shorthand = (icrLow >> 18) & 3;
        bool logical = (icrLow & (1u << 11)) != 0;
        byte vector = (byte)icrLow;
        var targets = new List<VirtualProcessor>();
        foreach (VirtualProcessor vp in partition.VirtualProcessors)
        {
            bool match = shorthand switch
            {
                1 => vp == source,
                2 => true,
                3 => vp != source,
                _ => vp.Apic.GloballyEnabled && vp.Apic.MatchesDestination(destination, logical),
            };
            if (match) targets.Add(vp);
        }

        if (mode == LowestPriority && targets.Count > 1)
        {
            VirtualProcessor lowest = targets[0];
            foreach (VirtualProcessor vp in targets)
            {
                if (vp.Apic.ProcessorPriority < lowest.Apic.ProcessorPriority) lowest = vp;
            }

            targets = [lowest];
        }

        var reached = new List<int>();
        source.IpisSent++;
        foreach (VirtualProcessor target in targets)
        {
            if (Deliver(source, target, mode, vector, icrLow))
            {
                reached.Add(target.Index);
                target.IpisReceived++;
            }
        }

        if (table.Trace.Enabled)
        {
            string what = mode switch { Fixed => "fixed", LowestPriority => "lowest-priority", Nmi => "nmi", Init => "init", Startup => "startup", _ => $"mode {mode}" };
            table.Trace.Record(table.Now(source), partition.Id, source.Index, TraceKind.Message,
                $"ipi {what} vector=0x{vector:x2} -> {(reached.Count == 0 ? "no vcpu" : "vcpu " + string.Join(',', reached))}");
        }
    }

    private bool Deliver(VirtualProcessor source, VirtualProcessor target, uint mode, byte vector, uint icrLow)
    {
        switch (mode)
        {
            case Fixed or LowestPriority:
                target.Apic.Accept(vector);
                return true;
            case Nmi:
                target.Core.RequestNmi();
                return true;
            case Init:
                bool deassert = (icrLow & (1u << 14)) == 0 && (icrLow & (1u << 15)) != 0;
                if (deassert || target == source || target.State == VpState.Stopped)
                {
                    return false;
                }

                target.Apic.Init();
                target.Core.ResetToRealMode(0xF000, 0xFFF0, processorSignature);
                target.State = VpState.WaitingForSipi;
                return true;
            case Startup when target.State == VpState.WaitingForSipi:
                target.Core.ResetToRealMode((ushort)(vector << 8), 0, processorSignature);
                target.SliceTicks = Math.Max(target.SliceTicks, source.SliceTicks);
                target.State = VpState.Runnable;
                return true;
            default:
                return false;
        }
    }
}
