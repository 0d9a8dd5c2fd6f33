namespace HybridVmm.Hardware.Memory;

/// <summary>
/// Where a guest's RAM may lie in its guest-physical address space: from 0 up to its size, all of it below
/// 0xE0000000 (3.5 GiB), at most 3583 MiB. The top 512 MiB of the 32-bit space is left to devices (the I/O APIC at
/// 0xFEC00000, the local APIC at 0xFEE00000). QEMU's PC does the same up to that size, and splits a larger RAM into 3 GiB
/// below 4 GiB and the rest above it, where a guest reaches it only with PAE; so up to this limit a guest finds the
/// RAM where QEMU's would, and larger guests wait for PAE.
/// </summary>
public static class GuestRam
{
    public const uint MaxBytes = 3583u << 20;
}
