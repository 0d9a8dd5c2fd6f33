using Orleans;

namespace HybridVmm.Cluster.Placement;

/// <summary>
/// Where a new (or restarted) VM goes, among the hosts that can take it (its memory free, no more vCPUs than the host
/// offers, its image reachable), by the host's load (<see cref="HostLoad"/>: the larger of its vCPU and memory shares):
/// <list type="bullet">
/// <item><c>least-loaded</c> (the default): the host whose load with the VM is the lowest, then the one with the most free memory;</item>
/// <item><c>pack</c>: bin-packing, the host whose load with the VM is the highest while it still has the VM's vCPUs
/// uncommitted, so whole hosts stay free; when every host's vCPUs are committed, the least loaded.</item>
/// </list>
/// Ties go to the lower address, so a placement is the same whichever host computes it.
/// </summary>
public static class PlacementPolicy
{
    public static readonly string[] Names = ["least-loaded", "pack"];

    public static HostStatus? Choose(IEnumerable<HostStatus> hosts, VmSpec spec, string policy)
    {
        long need = MemoryBytes(spec.Memory);
        int vcpus = spec.Vcpus;
        HostStatus[] fit = hosts
            .Where(h => HostLoad.Fits(h, vcpus, need) && CanReach(h, spec.Image))
            .OrderBy(h => h.Address, StringComparer.Ordinal)
            .ToArray();
        if (fit.Length == 0)
        {
            return null;
        }

        HostStatus leastLoaded = fit.OrderBy(h => HostLoad.After(h, vcpus, need)).ThenByDescending(h => h.Capacity.MemoryBytes - h.MemoryUsedBytes).First();
        return policy == "pack"
            ? fit.Where(h => HostLoad.HasVcpusFree(h, vcpus)).OrderByDescending(h => HostLoad.After(h, vcpus, need)).FirstOrDefault() ?? leastLoaded
            : leastLoaded;
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
