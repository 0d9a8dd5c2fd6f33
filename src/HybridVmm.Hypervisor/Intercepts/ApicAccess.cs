using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>
/// An access to the local APIC's register page, served in the kernel like an APIC-access VM exit on a processor without
/// APIC virtualization: the register is read or written at the vCPU's virtual time and the instruction completes with
/// the value. It costs what any exit the kernel serves itself costs, and never reaches the root.
/// </summary>
internal static class ApicAccess
{
    public static ExitOutcome Serve(PartitionTable partitions, Partition partition, VirtualProcessor vp, in CpuExit exit, long cost)
    {
        partition.Statistics.CountIntercept("apic");
        X86Core core = vp.Core;
        if (!core.CanCompleteMemoryIntercept)
        {
            partitions.Fault(partition, vp, $"{(exit.IsWrite ? "write to" : "read from")} the local APIC page at 0x{exit.GuestPhysicalAddress:x8} by an instruction that cannot complete a device access");
            return ExitOutcome.Stop;
        }

        uint offset = (uint)exit.GuestPhysicalAddress & 0xFFF;
        long now = partitions.GuestNow(partition, vp);
        uint value = 0;
        if (exit.IsWrite)
        {
            vp.Apic.Write(offset, exit.Size, exit.Value, now);
            vp.SyncInterruptWindow(); // LINT0 may have changed
        }
        else
        {
            value = vp.Apic.Read(offset, exit.Size, now);
        }

        core.CompleteMemoryIntercept(value);
        return new ExitOutcome(cost, 0, true);
    }
}
