using HybridVmm.Guests.Multiboot;

namespace HybridVmm.HostOS.Vm;

/// <summary>A validated image: the writes that place it and its boot information in guest memory, and its entry point.</summary>
public sealed record PreparedImage(uint Entry, IReadOnlyList<GuestWrite> Writes);
