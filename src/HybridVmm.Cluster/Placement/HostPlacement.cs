using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;
using Orleans;

namespace HybridVmm.Cluster.Placement;

/// <summary>
/// Places a host grain on the silo its key names (the silo address as <see cref="SiloAddress.ToParsableString"/>),
/// so that a call to host H always runs in H's process, next to H's hypervisor. A dead silo's grain cannot be placed.
/// </summary>
[Serializable, GenerateSerializer, Immutable, SuppressReferenceTracking]
public sealed class HostPlacement : PlacementStrategy
{
    public static readonly HostPlacement Instance = new();
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class HostPlacementAttribute() : PlacementAttribute(HostPlacement.Instance);

public sealed class HostPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        string key = target.GrainIdentity.Key.ToString()!;
        SiloAddress silo = SiloAddress.FromParsableString(key);
        if (!context.GetCompatibleSilos(target).Contains(silo))
        {
            throw new SiloUnavailableException($"host {key} is not an active member of the cluster");
        }

        return Task.FromResult(silo);
    }
}
