namespace HybridVmm.Hypervisor.Hv1;

/// <summary>
/// The HV_PARTITION_PRIVILEGE_MASK bits HybridVmm implements (TLFS 4.2.2): bits 0-31 are reported in CPUID
/// 0x40000003 EAX, bits 32-63 in EBX. A partition may use an MSR group or a hypercall only with its privilege.
/// </summary>
[Flags]
public enum HvPartitionPrivileges : ulong
{
    None = 0,
    /// <summary>HV_X64_MSR_TIME_REF_COUNT, the partition reference counter (TLFS 12.4).</summary>
    AccessPartitionReferenceCounter = 1UL << 1,
    AccessSynicMsrs = 1UL << 2,
    /// <summary>The synthetic timers' CONFIG and COUNT MSRs (TLFS 12.2).</summary>
    AccessSyntheticTimerMsrs = 1UL << 3,
    AccessHypercallMsrs = 1UL << 5,
    AccessVpIndex = 1UL << 6,
    /// <summary>HV_X64_MSR_REFERENCE_TSC, the partition's reference TSC page (TLFS chapter 12, "Partition Reference Time Enlightenment").</summary>
    AccessPartitionReferenceTsc = 1UL << 9,
    /// <summary>HV_X64_MSR_TSC_FREQUENCY and HV_X64_MSR_APIC_FREQUENCY, read only (TLFS 2.4.4, "AccessFrequencyRegs").</summary>
    AccessFrequencyMsrs = 1UL << 11,
    CreatePartitions = 1UL << 32,
    PostMessages = 1UL << 36,
    SignalEvents = 1UL << 37,

    /// <summary>What a child partition gets by default.</summary>
    Child = AccessPartitionReferenceCounter | AccessSynicMsrs | AccessSyntheticTimerMsrs | AccessHypercallMsrs | AccessVpIndex
        | AccessPartitionReferenceTsc | AccessFrequencyMsrs | PostMessages | SignalEvents,
}
