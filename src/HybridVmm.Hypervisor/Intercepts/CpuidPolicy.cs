namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>
/// What CPUID tells a guest. The kernel owns CPUID (as Hyper-V's hypervisor does): the answer describes an
/// i686-class processor that claims only features the core implements, sets the "hypervisor present" bit
/// and identifies HybridVmm in the hypervisor leaf range, Hyper-V style (TLFS 2.4).
/// </summary>
public static class CpuidPolicy
{
    /// <summary>The highest basic leaf: 7, for the structured extended features. Leaves 2-6 read as zero (no cache or
    /// TLB descriptors, no deterministic cache parameters, no MONITOR/MWAIT, no thermal and power management).</summary>
    public const uint MaxBasicLeaf = 7;

    /// <summary>Leaf 7 subleaf 0 EBX: SMEP (bit 7) and SMAP (bit 20, with STAC and CLAC). EAX, the highest subleaf, is 0.</summary>
    public const uint StructuredFeaturesEbx = (1u << 7) | (1u << 20);
    /// <summary>A TLFS-compliant ("Hv#1") hypervisor implements leaves 0x40000000-0x40000005 at least (TLFS 2.4).</summary>
    public const uint MaxHypervisorLeaf = 0x40000005;

    /// <summary>
    /// Leaf 1 EAX: family 6, model 6, stepping 3, the signature of QEMU's default i386 CPU (<c>qemu32</c>), so that a
    /// kernel takes the same model-specific paths under both. Family 6 model 1 (a Pentium Pro) made Linux apply its
    /// Pentium Pro errata workarounds (Errata #50, and SEP reported as broken below model 3 stepping 3).
    /// </summary>
    public const uint Signature = 0x0000_0663;

    /// <summary>
    /// Leaf 1 EDX: FPU (bit 0, the x87), PSE (bit 3, 4 MiB pages), TSC (bit 4), MSR (bit 5, RDMSR/WRMSR), PAE (bit 6, PAE
    /// paging), CX8 (bit 8), APIC (bit 9, the local APIC: cleared while IA32_APIC_BASE disables it), SEP (bit 11,
    /// SYSENTER/SYSEXIT), PGE (bit 13, global pages), CMOV (bit 15, with FCMOVcc and FCOMI since FPU is set), FXSR (bit 24,
    /// FXSAVE/FXRSTOR). No PSE-36, MMX or SSE. MAXPHYADDR is 36 (leaf 0x80000008), reached through PAE paging only.
    /// </summary>
    public const uint FeaturesEdx = (1u << 0) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | ApicFeature | (1u << 11) | (1u << 13) | (1u << 15) | (1u << 24);

    /// <summary>Leaf 1 EDX bit 9: an on-chip local APIC.</summary>
    public const uint ApicFeature = 1u << 9;

    /// <summary>
    /// The highest extended leaf: 0x80000008. Leaf 0x80000001 EDX reports NX (bit 20, execute-disable with IA32_EFER.NXE
    /// in PAE paging) and RDTSCP (bit 27), and nothing else (no long mode, no SYSCALL); leaves 0x80000002-0x80000007 read
    /// as zero (no brand string, no cache or power information); leaf 0x80000008 gives 36 physical and 32 linear address
    /// bits: PAE entries address RAM above 4 GiB (a guest of 3584 MiB or more has some) and reserve their bits 62:36.
    /// QEMU 7.2 gives a 32-bit CPU 36 physical bits only with PSE-36 (<c>-cpu qemu32,+pse36,xlevel=0x80000008</c> reads
    /// EAX 0x24 here; plain <c>qemu32</c> has 32 and stops at leaf 0x80000004), and leaves the linear width (EAX[15:8]) 0.
    /// </summary>
    public const uint MaxExtendedLeaf = 0x80000008;
    public const uint ExtendedFeaturesEdx = (1u << 20) | (1u << 27);
    public const uint AddressSizes = (32u << 8) | (uint)Hardware.Memory.GuestRam.MaxPhysicalAddressBits;

    /// <summary>Leaf 1 ECX bit 31 is reserved by Intel for "hypervisor present".</summary>
    public const uint HypervisorPresent = 1u << 31;

    /// <summary>"HybridVmm Hv" as the leaf 0x40000000 vendor signature in EBX, ECX, EDX.</summary>
    public const string VendorSignature = "HybridVmm Hv";

    /// <summary>Leaf 0x40000001 EAX: "Hv#1", the TLFS interface (synthetic MSRs, hypercalls, SynIC; TLFS 2.4.2).</summary>
    public const uint InterfaceSignature = 0x31237648;

    /// <summary>Leaf 0x40000002: hypervisor version, reported as build 1, version 0.1.</summary>
    public const uint VersionBuild = 1, VersionMajorMinor = 0x0000_0001;

    /// <summary>Leaf 0x40000003 EDX bit 19: synthetic timers may signal in direct mode, an APIC vector (TLFS 2.4.4, 12.2.1).</summary>
    public const uint DirectSyntheticTimers = 1u << 19;

    /// <summary>Leaf 0x40000003 EDX bit 8: HV_X64_MSR_TSC_FREQUENCY and HV_X64_MSR_APIC_FREQUENCY are present (TLFS 2.4.4).</summary>
    public const uint FrequencyMsrsAvailable = 1u << 8;

    /// <summary>Leaf 0x40000005 EAX: the virtual processors a partition may have (<c>--cpus</c>, at most 64).</summary>
    public const uint MaxVirtualProcessors = Partitions.Partition.MaxProcessors;

    /// <param name="privileges">The partition's HV_PARTITION_PRIVILEGE_MASK, reported in leaf 0x40000003 EAX (low) and EBX (high).</param>
    public static (uint Eax, uint Ebx, uint Ecx, uint Edx) Query(uint leaf, uint subleaf, ulong privileges = (ulong)Hv1.HvPartitionPrivileges.Child)
    {
        return leaf switch
        {
            0 => (MaxBasicLeaf, Pack("Genu"), Pack("ntel"), Pack("ineI")),
            1 => (Signature, 0, HypervisorPresent, FeaturesEdx),
            7 when subleaf == 0 => (0, StructuredFeaturesEbx, 0, 0),
            0x40000000 => (MaxHypervisorLeaf, Pack(VendorSignature[..4]), Pack(VendorSignature[4..8]), Pack(VendorSignature[8..])),
            0x40000001 => (InterfaceSignature, 0, 0, 0),
            0x40000002 => (VersionBuild, VersionMajorMinor, 0, 0),
            // Features (TLFS 2.4.4): the privilege mask in EAX/EBX; EDX bit 19, direct-mode synthetic timers, when the
            // partition may use the timers (no other ECX/EDX features: no XMM hypercalls, no guest idle state).
            0x40000003 => ((uint)privileges, (uint)(privileges >> 32), 0,
                ((privileges & (ulong)Hv1.HvPartitionPrivileges.AccessSyntheticTimerMsrs) != 0 ? DirectSyntheticTimers : 0)
                | ((privileges & (ulong)Hv1.HvPartitionPrivileges.AccessFrequencyMsrs) != 0 ? FrequencyMsrsAvailable : 0)),
            0x40000004 => (0, 0, 0, 0),  // no implementation recommendations
            0x40000005 => (MaxVirtualProcessors, MaxVirtualProcessors, 0, 0),
            0x80000000 => (MaxExtendedLeaf, 0, 0, 0),
            0x80000001 => (0, 0, 0, ExtendedFeaturesEdx),
            0x80000008 => (AddressSizes, 0, 0, 0),
            // Leaves past the maximum read as zero here (real Intel parts repeat the highest basic leaf;
            // zero is the documented, deterministic choice of this platform).
            _ => (0, 0, 0, 0),
        };
    }

    private static uint Pack(string four) =>
        (uint)four[0] | ((uint)four[1] << 8) | ((uint)four[2] << 16) | ((uint)four[3] << 24);
}
