namespace HybridVmm.Cluster.Placement;

/// <summary>
/// A host's load, the one measure placement and the balancer share (docs/cluster.md#load): the vCPUs of its active VMs
/// (created, running or paused) against the vCPUs it offers, and the memory in use against its host memory; the load is
/// the larger of the two shares, the host's dominant resource, so a host is as loaded as the resource it is shortest of.
/// A host may run more vCPUs than it offers (its VMs run on virtual time), so the load may exceed 1; a single VM may not
/// have more vCPUs than a host offers, as Hyper-V refuses a VM more virtual processors than the host's logical ones.
/// </summary>
public static class HostLoad
{
    /// <summary>The load as a fraction of the host's capacity (1: every vCPU it offers, or all its memory, in use).</summary>
    public static double Of(HostStatus host) => After(host, 0, 0);

    /// <summary>The load the host would have with one more VM of <paramref name="vcpus"/> and <paramref name="memoryBytes"/> (negative: one fewer).</summary>
    public static double After(HostStatus host, int vcpus, long memoryBytes)
    {
        double cpu = (double)(host.ActiveVcpus + vcpus) / Math.Max(1, host.Capacity.Vcpus);
        double memory = (double)(host.MemoryUsedBytes + memoryBytes) / Math.Max(1, host.Capacity.MemoryBytes);
        return Math.Max(cpu, memory);
    }

    /// <summary>Whether the host can take a VM of <paramref name="vcpus"/> and <paramref name="memoryBytes"/> at all: its memory free, and no more vCPUs than it offers.</summary>
    public static bool Fits(HostStatus host, int vcpus, long memoryBytes) =>
        vcpus <= host.Capacity.Vcpus && host.Capacity.MemoryBytes - host.MemoryUsedBytes >= memoryBytes;

    /// <summary>Whether the host has the VM's vCPUs uncommitted too (bin-packing fills a host up to its vCPUs, not beyond).</summary>
    public static bool HasVcpusFree(HostStatus host, int vcpus) => host.ActiveVcpus + vcpus <= host.Capacity.Vcpus;

    /// <summary>A load for a table or a history line: "150%".</summary>
    public static string Percent(double load) => $"{load * 100:0}%";
}
