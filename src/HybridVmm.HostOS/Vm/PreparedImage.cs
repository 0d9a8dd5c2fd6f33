using HybridVmm.Guests.Multiboot;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.Vm;

/// <summary>
/// A validated image: the writes that place it and its boot information in guest memory, and the boot vCPU's
/// starting state (<see cref="Boot"/>). <see cref="Kind"/> names the boot protocol ("multiboot" or "linux").
/// </summary>
public sealed record PreparedImage(BootRegisters Boot, IReadOnlyList<GuestWrite> Writes, string Kind = PreparedImage.Multiboot)
{
    public const string Multiboot = "multiboot";
    public const string Linux = "linux";

    public uint Entry => Boot.Eip;
}
