using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor.Enlightened;

/// <summary>
/// Guests' requests for the root (HvPostMessage to the VMBus connection, HvSignalEvent on a channel): queued when
/// the guest makes them, and handed to the root at the pass barrier by <see cref="FlushToRootAsync"/>, one at a
/// time, while every vCPU is stopped, so that the root never touches a running guest's memory.
/// </summary>
internal sealed class RootRequestQueue(PartitionTable partitions, MessagePort<VmBusRequest> toRoot, MessagePort<VmBusRequest> done)
{
    /// <summary>Requests a partition may have queued for the root before HvPostMessage reports HV_STATUS_INSUFFICIENT_BUFFERS.</summary>
    public const int MaxQueuedPerPartition = EnlightenedState.MaxPendingRequests;

    private readonly List<VmBusRequest> _queue = new();

    /// <summary>Virtual time of the request the root is serving (its effects on guests are stamped with it); -1 between requests.</summary>
    public long CurrentRequestTime { get; private set; } = -1;

    public HvStatus QueueForRoot(Partition partition, VirtualProcessor vp, VmBusRequestKind kind, uint connection, uint type, byte[] payload)
    {
        lock (_queue)
        {
            int queued = 0;
            foreach (VmBusRequest r in _queue)
            {
                if (r.PartitionId != partition.Id) continue;
                // An event flag that is already set is not set again: repeated signals before the root runs coalesce.
                if (kind == VmBusRequestKind.Signal && r.Kind == VmBusRequestKind.Signal && r.ConnectionId == connection) return HvStatus.Success;
                queued++;
            }

            if (queued >= MaxQueuedPerPartition)
            {
                return HvStatus.InsufficientBuffers;
            }

            _queue.Add(new VmBusRequest(partition.Id, vp.Index, partitions.Now(vp), kind, connection, type, payload));
        }

        partition.Statistics.ChannelMessages++;
        return HvStatus.Success;
    }

    public bool HasQueuedRequests => _queue.Count > 0;

    /// <summary>The partition's requests still waiting for the root, in order (a snapshot taken between two barriers).</summary>
    public List<PendingRootRequest> PendingFor(Partition partition)
    {
        var pending = new List<PendingRootRequest>();
        lock (_queue)
        {
            foreach (VmBusRequest r in _queue)
            {
                if (r.PartitionId == partition.Id)
                {
                    pending.Add(new PendingRootRequest(r.VpIndex, r.Kind, r.ConnectionId, r.MessageType, r.Payload.ToArray()));
                }
            }
        }

        return pending;
    }

    /// <summary>Queues restored requests again; they were counted when the guest made them, so no statistics change.</summary>
    public void Requeue(Partition partition, IEnumerable<PendingRootRequest> requests)
    {
        // Restores may run on another thread than the scheduler (a restore beside running guests).
        lock (_queue)
        {
            foreach (PendingRootRequest r in requests)
            {
                _queue.Add(new VmBusRequest(partition.Id, r.VpIndex, partitions.Now(partition), r.Kind, r.ConnectionId, r.MessageType, r.Payload.ToArray()));
            }
        }
    }

    /// <summary>At a pass barrier: hands each queued request to the root and waits until the root has served it.</summary>
    public async ValueTask FlushToRootAsync(CancellationToken cancellationToken)
    {
        VmBusRequest[] batch;
        lock (_queue)
        {
            if (_queue.Count == 0)
            {
                return;
            }

            batch = _queue.ToArray();
            _queue.Clear();
        }

        foreach (VmBusRequest request in batch)
        {
            CurrentRequestTime = request.VirtualTime;
            await toRoot.SendAsync(request, cancellationToken).ConfigureAwait(false);
            await done.ReceiveAsync(cancellationToken).ConfigureAwait(false);
        }

        CurrentRequestTime = -1;
    }
}
