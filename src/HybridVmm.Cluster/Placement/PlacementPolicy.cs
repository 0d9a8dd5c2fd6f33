using Orleans;

namespace HybridVmm.Cluster.Placement;

/// <summary>
/// Where a new (or restarted) VM goes, among the hosts that have the memory for it and can reach its image:
/// <list type="bullet">
/// <item><c>least-loaded</c> (the default): the host with the fewest active VMs, then the most free memory;</item>
/// <item><c>pack</c>: bin-packing, the host with the least free memory that still fits, so whole hosts stay free.</item>
/// </list>
/// Ties go to the lower address, so a placement is the same whichever host computes it.
/// </summary>
public static class PlacementPolicy
{
    public static readonly string[] Names = ["least-loaded", "pack"];

    public static HostStatus? Choose(IEnumerable<HostStatus> hosts, VmSpec spec, string policy)
    {
        long need = MemoryBytes(spec.Memory);
        HostStatus[] fit = hosts
            .Where(h => h.Capacity.MemoryBytes - h.MemoryUsedBytes >= need && CanReach(h, spec.Image))
            .OrderBy(h => h.Address, StringComparer.Ordinal)
            .ToArray();
        if (fit.Length == 0)
        {
            return null;
        }

        return policy == "pack"
            ? fit.OrderBy(h => h.Capacity.MemoryBytes - h.MemoryUsedBytes).First()
            : fit.OrderBy(h => h.ActiveVms).ThenByDescending(h => h.Capacity.MemoryBytes - h.MemoryUsedBytes).First();
    }

    /// <summary>An embedded guest must be one the host has; a file path is taken as reachable (shared storage).</summary>
    private static bool CanReach(HostStatus host, string image) =>
        !image.StartsWith("embedded:", StringComparison.Ordinal) || host.Capacity.Images.Contains(image, StringComparer.Ordinal);

    /// <summary>A size as the CLI writes it (64M, 512K, 1G); the host checks it properly when it creates the VM.</summary>
    public static long MemoryBytes(string size)
    {
        if (string.IsNullOrEmpty(size))
        {
            return 64L << 20;
        }

        long shift = char.ToUpperInvariant(size[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => 0 };
        string digits = shift == 0 ? size : size[..^1];
        return long.TryParse(digits, out long value) && value >= 0 ? value << (int)shift : 0;
    }
}
