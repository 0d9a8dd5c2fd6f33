namespace HybridVmm.Hypervisor.Partitions;

/// <summary>A partition's copy-on-write sharing: pages still shared with its template, and pages it has copied since.</summary>
public readonly record struct MemorySharing(int SharedPages, long CopyOnWriteCopies);
