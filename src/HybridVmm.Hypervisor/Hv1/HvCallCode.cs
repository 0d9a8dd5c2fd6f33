namespace HybridVmm.Hypervisor.Hv1;

/// <summary>
/// Hypercall call codes (bits 15:0 of the control word). The TLFS ones keep their TLFS numbers (appendix A);
/// the GPADL calls are HybridVmm extensions in the 0x8000 range, which the TLFS does not use: on Hyper-V
/// the root's VMBus server receives GPADLs as channel messages and maps them itself, here the kernel
/// records the grant so it can refuse every other root access (the Xen grant-table discipline).
/// </summary>
public static class HvCallCode
{
    /// <summary>Root only (TLFS): a child asking for it gets HV_STATUS_ACCESS_DENIED.</summary>
    public const ushort CreatePartition = 0x0040;
    /// <summary>Root only (TLFS).</summary>
    public const ushort MapGpaPages = 0x004B;
    public const ushort PostMessage = 0x005C;
    public const ushort SignalEvent = 0x005D;
    /// <summary>Rep call: header { u32 gpadlId; u32 reserved }, elements u64 guest page numbers.</summary>
    public const ushort CreateGpadl = 0x8001;
    /// <summary>Fast call: EBX:ECX low dword = gpadlId.</summary>
    public const ushort DeleteGpadl = 0x8002;

    public static string Name(ushort code) => code switch
    {
        CreatePartition => "HvCallCreatePartition",
        MapGpaPages => "HvCallMapGpaPages",
        PostMessage => "HvCallPostMessage",
        SignalEvent => "HvCallSignalEvent",
        CreateGpadl => "HvCallCreateGpadl",
        DeleteGpadl => "HvCallDeleteGpadl",
        _ => $"call 0x{code:x4}",
    };
}
