using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

using HybridVmm.Hypervisor.Hv1;

namespace HybridVmm.Hypervisor.Enlightened;

/// <summary>
/// RDMSR and WRMSR of the synthetic MSRs (TLFS 3.13 for the guest OS ID and hypercall MSRs, 11.8 for the SynIC
/// ones, 12 for the reference counter, the reference TSC page and the synthetic timers). An unknown MSR, reserved bits, a read-only or write-only register, or a partition without the
/// privilege for the MSR group get #GP(0), as on Hyper-V. Architectural MSRs are served here too, as every
/// hypervisor does for a P6-family CPU: IA32_TIME_STAMP_COUNTER (0x10; a write moves the TSC offset, SDM Vol. 3B,
/// 18.17), IA32_BIOS_SIGN_ID (0x8B; writes are accepted and reads give microcode revision 0, since there is no
/// microcode to update), IA32_SYSENTER_CS/ESP/EIP (0x174-0x176, held in the core for SYSENTER and SYSEXIT) and
/// IA32_TSC_AUX (0xC0000103, for RDTSCP), IA32_EFER (0xC0000080: NXE only, the processor having NX but neither
/// SYSCALL nor long mode; any other bit is #GP), and IA32_APIC_BASE (0x1B), the local APIC's base and global enable (SDM
/// Vol. 3A, 11.4.4).
/// </summary>
internal sealed class MsrHandler(PartitionTable partitions)
{
    /// <summary>vmcall; ret: what the hypervisor writes at the start of the hypercall page.</summary>
    private static readonly byte[] HypercallStub = { 0x0F, 0x01, 0xC1, 0xC3 };

    public const uint Ia32TimeStampCounter = 0x10;
    public const uint Ia32BiosSignId = 0x8B;
    public const uint Ia32SysenterCs = 0x174, Ia32SysenterEsp = 0x175, Ia32SysenterEip = 0x176;
    public const uint Ia32TscAux = 0xC0000103;
    public const uint Ia32Efer = 0xC0000080;

    public void Read(Partition partition, VirtualProcessor vp, uint msr)
    {
        HvPartitionState hv = partition.Hv;
        bool ok = true;
        ulong value = 0;
        switch (msr)
        {
            case Ia32TimeStampCounter:
                value = vp.Core.TimeStampCounter;
                break;
            case Ia32BiosSignId:
                break;
            case Ia32SysenterCs:
                value = vp.Core.SysenterCs;
                break;
            case Ia32SysenterEsp:
                value = vp.Core.SysenterEsp;
                break;
            case Ia32SysenterEip:
                value = vp.Core.SysenterEip;
                break;
            case Ia32TscAux:
                value = vp.Core.TscAux;
                break;
            case Ia32Efer:
                value = vp.Core.Efer;
                break;
            case Apic.ApicRegisters.Ia32ApicBase:
                value = vp.Apic.BaseMsr;
                break;
            case HvMsr.GuestOsId when Allowed(hv, HvPartitionPrivileges.AccessHypercallMsrs):
                value = hv.GuestOsId;
                break;
            case HvMsr.Hypercall when Allowed(hv, HvPartitionPrivileges.AccessHypercallMsrs):
                value = hv.HypercallMsr;
                break;
            case HvMsr.VpIndex when Allowed(hv, HvPartitionPrivileges.AccessVpIndex):
                value = (ulong)vp.Index;
                break;
            case HvMsr.TimeRefCount when Allowed(hv, HvPartitionPrivileges.AccessPartitionReferenceCounter):
                value = SynIc.SyntheticTimers.ReferenceTime(partitions.GuestNow(partition, vp));
                break;
            case HvMsr.ReferenceTsc when Allowed(hv, HvPartitionPrivileges.AccessPartitionReferenceTsc):
                value = hv.ReferenceTscMsr;
                break;
            case HvMsr.TscFrequency when Allowed(hv, HvPartitionPrivileges.AccessFrequencyMsrs):
            case HvMsr.ApicFrequency when Allowed(hv, HvPartitionPrivileges.AccessFrequencyMsrs):
                // The TSC and the APIC timer's input both count at 1 GHz of the partition's virtual time
                // (docs/guest-platform.md), so a guest need not calibrate either against the PIT. Writes are #GP.
                value = (ulong)Hardware.Clock.VirtualClock.TicksPerSecond;
                break;
            default:
                // EOM reads as 0 (it has nothing to return; KVM reads it so and kvm-unit-tests' hyperv_synic requires it).
                ok = Allowed(hv, PrivilegeFor(msr)) && vp.Synic.TryReadMsr(msr, out value);
                break;
        }

        Trace(partition, vp, ok ? $"rdmsr {HvMsr.Name(msr)} (0x{msr:x8}) -> 0x{value:x16}" : $"rdmsr 0x{msr:x8} ({HvMsr.Name(msr)}) -> #GP");
        if (ok) vp.Core.CompleteRdmsr(value);
        else vp.Core.InjectException(ExceptionVector.GeneralProtection);
    }

    public void Write(Partition partition, VirtualProcessor vp, uint msr, ulong value)
    {
        HvPartitionState hv = partition.Hv;
        bool ok;
        switch (msr)
        {
            case Ia32TimeStampCounter:
                vp.Core.TscOffset = value - (vp.Core.TimeStampCounter - vp.Core.TscOffset);
                ReferenceTscPage.Update(partition); // the page's offset follows the TSC, or the page becomes invalid
                ok = true;
                break;
            case Ia32BiosSignId:
                ok = true;
                break;
            case Ia32SysenterCs or Ia32SysenterEsp or Ia32SysenterEip:
                // A 32-bit processor keeps the low half (QEMU's i386 target keeps target_ulong, 32 bits).
                if (msr == Ia32SysenterCs) vp.Core.SysenterCs = (uint)value;
                else if (msr == Ia32SysenterEsp) vp.Core.SysenterEsp = (uint)value;
                else vp.Core.SysenterEip = (uint)value;
                ok = true;
                break;
            case Ia32TscAux:
                ok = value >> 32 == 0; // bits 63:32 are reserved (SDM Vol. 4, table 2-2)
                if (ok) vp.Core.TscAux = (uint)value;
                break;
            case Ia32Efer:
                ok = (value & ~(ulong)X86Core.EferNxe) == 0; // SCE, LME and the rest: features CPUID does not report
                if (ok) vp.Core.Efer = (uint)value;
                break;
            case Apic.ApicRegisters.Ia32ApicBase:
                ok = vp.Apic.WriteBaseMsr(value);
                vp.SyncInterruptWindow(); // a globally disabled APIC passes the 8259's INTR straight through
                break;
            case HvMsr.GuestOsId when Allowed(hv, HvPartitionPrivileges.AccessHypercallMsrs):
                hv.GuestOsId = value;
                if (value == 0)
                {
                    hv.HypercallMsr &= ~1UL; // clearing the OS ID disables the hypercall page (TLFS 3.13)
                }

                ok = true;
                break;
            case HvMsr.Hypercall when Allowed(hv, HvPartitionPrivileges.AccessHypercallMsrs):
                ok = WriteHypercallMsr(partition, value);
                break;
            case HvMsr.ReferenceTsc when Allowed(hv, HvPartitionPrivileges.AccessPartitionReferenceTsc):
                ok = WriteReferenceTscMsr(partition, value);
                break;
            default:
                ok = Allowed(hv, PrivilegeFor(msr)) && vp.Synic.TryWriteMsr(msr, value, partitions.GuestNow(partition, vp));
                break;
        }

        Trace(partition, vp, $"wrmsr {HvMsr.Name(msr)} (0x{msr:x8}) value=0x{value:x16}{(ok ? "" : " -> #GP")}");
        if (ok) vp.Core.CompleteWrmsr();
        else vp.Core.InjectException(ExceptionVector.GeneralProtection);
    }

    /// <summary>
    /// Bit 0 enables the page, bit 1 locks the MSR, bits 63:12 give its GPA. Enabling needs a non-zero guest
    /// OS ID (the bit then reads back 0). The hypervisor overlays the stub on that guest page.
    /// </summary>
    private bool WriteHypercallMsr(Partition partition, ulong value)
    {
        HvPartitionState hv = partition.Hv;
        if ((hv.HypercallMsr & 2) != 0 || (value & 0xFFC) != 0)
        {
            return false; // locked, or reserved bits 11:2
        }

        if (hv.GuestOsId == 0)
        {
            value &= ~1UL;
        }

        if ((value & 1) != 0)
        {
            ulong gpa = value & ~0xFFFUL;
            if (partition.AddressSpace is not { } space || !space.IsRam(gpa, 0x1000))
            {
                return false;
            }

            space.TryWrite(gpa, HypercallStub);
        }

        hv.HypercallMsr = value;
        return true;
    }

    /// <summary>
    /// HV_X64_MSR_REFERENCE_TSC (TLFS chapter 12, "Reference TSC Page MSR"): bit 0 enables the page, bits 11:1 are reserved to preserve (kept as written,
    /// as KVM keeps them), bits 63:12 give its GPA. Enabling it on a page outside the partition's RAM is refused (#GP), as
    /// the hypercall and SynIC pages are. The page is written at once (<see cref="ReferenceTscPage"/>).
    /// </summary>
    private static bool WriteReferenceTscMsr(Partition partition, ulong value)
    {
        if ((value & ReferenceTscPage.EnableBit) != 0
            && (partition.AddressSpace is not { } space || (value & ~0xFFFUL) + 0x1000 > space.SizeBytes))
        {
            return false;
        }

        partition.Hv.ReferenceTscMsr = value;
        ReferenceTscPage.Update(partition);
        return true;
    }

    private static HvPartitionPrivileges PrivilegeFor(uint msr) =>
        SynIc.SyntheticTimers.Owns(msr) ? HvPartitionPrivileges.AccessSyntheticTimerMsrs : HvPartitionPrivileges.AccessSynicMsrs;

    private static bool Allowed(HvPartitionState hv, HvPartitionPrivileges privilege) => (hv.Privileges & privilege) != 0;

    private void Trace(Partition partition, VirtualProcessor vp, string details)
    {
        if (partitions.Trace.Enabled)
        {
            partitions.Trace.Record(partitions.Now(vp), partition.Id, vp.Index, TraceKind.Msr, details);
        }
    }
}
