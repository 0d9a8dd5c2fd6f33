namespace HybridVmm.Hypervisor.Hv1;

/// <summary>Synthetic MSR indices (TLFS appendix, "Hypervisor Synthetic MSRs").</summary>
public static class HvMsr
{
    public const uint GuestOsId = 0x40000000;     // HV_X64_MSR_GUEST_OS_ID
    public const uint Hypercall = 0x40000001;     // HV_X64_MSR_HYPERCALL
    public const uint VpIndex = 0x40000002;       // HV_X64_MSR_VP_INDEX (read only)
    public const uint TimeRefCount = 0x40000020;  // HV_X64_MSR_TIME_REF_COUNT (read only)
    public const uint ReferenceTsc = 0x40000021;  // HV_X64_MSR_REFERENCE_TSC (the partition's reference TSC page)
    public const uint TscFrequency = 0x40000022;  // HV_X64_MSR_TSC_FREQUENCY (read only, Hz)
    public const uint ApicFrequency = 0x40000023; // HV_X64_MSR_APIC_FREQUENCY (read only, Hz: the local APIC timer's input clock)
    public const uint SControl = 0x40000080;      // HV_X64_MSR_SCONTROL
    public const uint SVersion = 0x40000081;      // HV_X64_MSR_SVERSION (read only)
    public const uint Siefp = 0x40000082;         // HV_X64_MSR_SIEFP
    public const uint Simp = 0x40000083;          // HV_X64_MSR_SIMP
    public const uint Eom = 0x40000084;           // HV_X64_MSR_EOM (writes act; reads give 0, as KVM's do)
    public const uint Sint0 = 0x40000090;         // HV_X64_MSR_SINT0 .. SINT15 = 0x4000009F
    public const uint Sint15 = 0x4000009F;
    public const uint Stimer0Config = 0x400000B0;  // HV_X64_MSR_STIMER0_CONFIG; timer n: CONFIG 0x400000B0 + 2n, COUNT + 1
    public const uint Stimer3Count = 0x400000B7;

    public static string Name(uint msr) => msr switch
    {
        0x10 => "IA32_TIME_STAMP_COUNTER",
        0x1B => "IA32_APIC_BASE",
        0x8B => "IA32_BIOS_SIGN_ID",
        0x174 => "IA32_SYSENTER_CS",
        0x175 => "IA32_SYSENTER_ESP",
        0x176 => "IA32_SYSENTER_EIP",
        0xC0000103 => "IA32_TSC_AUX",
        0xC0000080 => "IA32_EFER",
        GuestOsId => "HV_X64_MSR_GUEST_OS_ID",
        Hypercall => "HV_X64_MSR_HYPERCALL",
        VpIndex => "HV_X64_MSR_VP_INDEX",
        SControl => "HV_X64_MSR_SCONTROL",
        SVersion => "HV_X64_MSR_SVERSION",
        Siefp => "HV_X64_MSR_SIEFP",
        Simp => "HV_X64_MSR_SIMP",
        Eom => "HV_X64_MSR_EOM",
        TimeRefCount => "HV_X64_MSR_TIME_REF_COUNT",
        ReferenceTsc => "HV_X64_MSR_REFERENCE_TSC",
        TscFrequency => "HV_X64_MSR_TSC_FREQUENCY",
        ApicFrequency => "HV_X64_MSR_APIC_FREQUENCY",
        >= Stimer0Config and <= Stimer3Count => $"HV_X64_MSR_STIMER{(msr - Stimer0Config) / 2}_{((msr & 1) == 0 ? "CONFIG" : "COUNT")}",
        >= Sint0 and <= Sint15 => $"HV_X64_MSR_SINT{msr - Sint0}",
        _ => "unknown",
    };
}
