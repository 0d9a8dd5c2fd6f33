using HybridVmm.Cluster.Hosting;
using HybridVmm.Cluster.Placement;
using Orleans.GrainDirectory;
using Orleans;

namespace HybridVmm.Cluster.Grains;

/// <summary>Chooses hosts for new and restarted VMs, one choice at a time (one grain, key "all").</summary>
public interface IPlacementGrain : IGrainWithStringKey
{
    /// <summary>A host for <paramref name="spec"/>, never <paramref name="exclude"/>; null when none has room.</summary>
    Task<HostStatus?> ChooseAsync(VmSpec spec, string? exclude);
}

/// <summary>
/// Not reentrant, so that choices are made one after another; and each choice is remembered as a reservation until
/// the host lists the VM (or 30 s pass), so that VMs created at the same moment, or restarted together after a
/// host's death, see each other's load (vCPUs and memory) instead of all landing on the same host.
/// </summary>
[GrainDirectory(GrainDirectoryName = ClusterStorage.Name)]
public sealed class PlacementGrain(ClusterHostOptions options) : Grain, IPlacementGrain
{
    public const string Key = "all";

    private static readonly TimeSpan ReservationLifetime = TimeSpan.FromSeconds(30);

    private readonly List<(string Host, string Vm, long MemoryBytes, int Vcpus, DateTime At)> _reservations = [];

    public async Task<HostStatus?> ChooseAsync(VmSpec spec, string? exclude)
    {
        HostStatus[] hosts = await ClusterHosts.StatusAsync(GrainFactory, exclude);
        DateTime now = DateTime.UtcNow;
        _reservations.RemoveAll(r => now - r.At > ReservationLifetime
            || hosts.Any(h => h.Address == r.Host && h.Vms.Any(v => v.Name == r.Vm)));
        HostStatus[] withReservations = hosts.Select(h =>
        {
            var pending = _reservations.Where(r => r.Host == h.Address).ToArray();
            return pending.Length == 0 ? h : h with
            {
                MemoryUsedBytes = h.MemoryUsedBytes + pending.Sum(r => r.MemoryBytes),
                Vms = [.. h.Vms, .. pending.Select(r => new HostVm(r.Vm, "created", 0, r.MemoryBytes, null, r.Vcpus))],
            };
        }).ToArray();
        HostStatus? chosen = PlacementPolicy.Choose(withReservations, spec, options.Placement);
        if (chosen is not null)
        {
            _reservations.Add((chosen.Address, spec.Name, PlacementPolicy.MemoryBytes(spec.Memory), spec.Vcpus, now));
        }

        return chosen;
    }
}
