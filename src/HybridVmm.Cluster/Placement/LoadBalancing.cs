namespace HybridVmm.Cluster.Placement;

/// <summary>
/// The balancer's rule (docs/cluster.md#the-balancer), on the hosts' load as <see cref="HostLoad"/> measures it: when the
/// most loaded host is at least the threshold's percentage points above the least loaded, one running VM of the most
/// loaded may move to the least loaded, if the move lowers the higher of the two hosts' loads below the busiest's load
/// now (so a move never merely swaps the imbalance) and the least loaded can take it. The candidates come best first:
/// the VM whose move leaves the higher of the two loads lowest, then in name order, so whoever looks chooses the same.
/// </summary>
public static class LoadBalancing
{
    /// <summary>The busiest and idlest hosts, and the VMs that may move between them, best first; none when the hosts are balanced.</summary>
    public static (HostStatus Busiest, HostStatus Idlest, HostVm[] Candidates)? Moves(IReadOnlyCollection<HostStatus> hosts, int thresholdPercent)
    {
        if (hosts.Count < 2)
        {
            return null;
        }

        HostStatus busiest = hosts.OrderByDescending(HostLoad.Of).ThenBy(h => h.Address, StringComparer.Ordinal).First();
        HostStatus idlest = hosts.OrderBy(HostLoad.Of).ThenBy(h => h.Address, StringComparer.Ordinal).First();
        double busiestLoad = HostLoad.Of(busiest);
        if ((busiestLoad - HostLoad.Of(idlest)) * 100 < thresholdPercent)
        {
            return null;
        }

        HostVm[] candidates = busiest.Vms
            .Where(v => v.State == "running" && HostLoad.Fits(idlest, v.Vcpus, v.MemoryBytes))
            .Select(v => (Vm: v, Peak: Math.Max(HostLoad.After(busiest, -v.Vcpus, -v.MemoryBytes), HostLoad.After(idlest, v.Vcpus, v.MemoryBytes))))
            .Where(c => c.Peak < busiestLoad)
            .OrderBy(c => c.Peak)
            .ThenBy(c => c.Vm.Name, StringComparer.Ordinal)
            .Select(c => c.Vm)
            .ToArray();
        return (busiest, idlest, candidates);
    }

    /// <summary>"h1 at 150% (6 of 4 vCPUs, 2 VMs)": what a history line says of a host's load.</summary>
    public static string Describe(HostStatus host) =>
        $"{host.Name} at {HostLoad.Percent(HostLoad.Of(host))} ({host.ActiveVcpus} of {host.Capacity.Vcpus} vCPUs, {host.ActiveVms} VM{(host.ActiveVms == 1 ? "" : "s")})";
}
