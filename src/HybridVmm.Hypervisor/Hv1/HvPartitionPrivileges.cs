namespace HybridVmm.Hypervisor.Hv1;

/// <summary>
/// The HV_PARTITION_PRIVILEGE_MASK bits HybridVmm implements (TLFS 4.2.2): bits 0-31 are reported in CPUID
/// 0x40000003 EAX, bits 32-63 in EBX. A partition may use an MSR group or a hypercall only with its privilege.
/// </summary>
[Flags]
public enum HvPartitionPrivileges : ulong
{
    None = 0,
    AccessSynicMsrs = 1UL << 2,
    AccessHypercallMsrs = 1UL << 5,
    AccessVpIndex = 1UL << 6,
    CreatePartitions = 1UL << 32,
    PostMessages = 1UL << 36,
    SignalEvents = 1UL << 37,

    /// <summary>What a child partition gets by default.</summary>
    Child = AccessSynicMsrs | AccessHypercallMsrs | AccessVpIndex | PostMessages | SignalEvents,
}
