using System.Collections.Concurrent;

namespace HybridVmm.Hypervisor.Interrupts;

/// <summary>
/// Fixed interrupts the root asserted for guests' vCPUs (a device's interrupt line). The root may post from
/// its own threads; only the scheduler thread delivers, into a vCPU that is not running, so what the guest
/// sees does not depend on host timing: an interrupt posted while the root serves an intercept is delivered
/// before that intercept completes.
/// </summary>
internal sealed class InterruptQueue
{
    private readonly ConcurrentQueue<(int PartitionId, int VpIndex, byte Vector)> _posted = new();

    public void Post(int partitionId, int vpIndex, byte vector) => _posted.Enqueue((partitionId, vpIndex, vector));

    public bool IsEmpty => _posted.IsEmpty;

    /// <summary>Hands every posted interrupt to <paramref name="deliver"/>, in posting order.</summary>
    public void Drain(Action<int, int, byte> deliver)
    {
        while (_posted.TryDequeue(out var posted))
        {
            deliver(posted.PartitionId, posted.VpIndex, posted.Vector);
        }
    }
}
