using HybridVmm.Guests.Multiboot;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.Vm;

/// <summary>
/// A validated image: the writes that place it and its boot information in guest memory, and the boot vCPU's
/// starting state (<see cref="Boot"/>), Multiboot's or Linux's.
/// </summary>
public sealed record PreparedImage(BootRegisters Boot, IReadOnlyList<GuestWrite> Writes)
{
    public uint Entry => Boot.Eip;
}
