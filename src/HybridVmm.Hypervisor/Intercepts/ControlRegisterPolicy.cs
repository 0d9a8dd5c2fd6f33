using HybridVmm.Hardware.Cpu;

namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>
/// The CR0 and CR4 bits the kernel owns, as a VMX hypervisor's CR0 and CR4 guest/host masks do (SDM Vol. 3C, 25.6.6):
/// a guest write that changes one of them exits to the kernel. They are the bits the kernel's combined software TLB
/// (guest linear address to host frame, through the guest's tables and the kernel's second-level table) depends on:
/// paging on or off and protected mode (PG, PE), supervisor write protection (WP), caching (CD, NW), page sizes and the
/// PAE format (PSE, PAE), global pages (PGE) and the supervisor protections (SMEP, SMAP). A hypervisor that shadows
/// the guest's translations owns the same bits (ACRN traps CR0's PE, PG, WP, CD and NW; KVM without EPT owns CR0.WP
/// and CR4.PGE). The rest (TS, MP, EM, NE, AM, OSFXSR) are the guest's: writing them costs no exit.
/// </summary>
public static class ControlRegisterPolicy
{
    public const uint Cr0Owned = (uint)(Cr0Flags.PE | Cr0Flags.PG | Cr0Flags.WP | Cr0Flags.CD | Cr0Flags.NW);

    public const uint Cr4Owned = (uint)(Cr4Flags.PSE | Cr4Flags.PAE | Cr4Flags.PGE | Cr4Flags.SMEP | Cr4Flags.SMAP);
}
