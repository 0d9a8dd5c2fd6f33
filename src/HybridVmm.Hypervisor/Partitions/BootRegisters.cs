namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// The boot vCPU's state when a partition starts, as a loader hands it over: flat 32-bit protected mode with paging
/// off and interrupts disabled (no GDT loaded: every GDT selector reads as a flat 4 GiB segment until the guest loads
/// its own), EIP, the general registers a boot protocol passes values in, and the code and data selectors.
/// </summary>
/// <param name="Eip">The entry point.</param>
/// <param name="Eax">Multiboot: the boot loader magic.</param>
/// <param name="Ebx">Multiboot: the information structure's address.</param>
/// <param name="Esi">Linux: the zero page (struct boot_params).</param>
/// <param name="CodeSelector">CS: 0x08 for Multiboot, __BOOT_CS (0x10) for Linux.</param>
/// <param name="DataSelector">DS, ES, FS, GS and SS: 0x10 for Multiboot, __BOOT_DS (0x18) for Linux.</param>
public readonly record struct BootRegisters(uint Eip, uint Eax = 0, uint Ebx = 0, uint Esi = 0, ushort CodeSelector = 0x08, ushort DataSelector = 0x10);
