using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.VmBus;

using HybridVmm.Hypervisor.Hv1;

namespace HybridVmm.Hypervisor.Enlightened;

/// <summary>
/// The kernel's synthetic (enlightened) interface, reached through RDMSR, WRMSR and VMCALL exits: the
/// scheduler hands those exits here and charges the ticks returned. Guest requests for the root (HvPostMessage
/// to the VMBus connection, HvSignalEvent on a channel) are queued and passed on at the pass barrier by
/// <see cref="FlushToRootAsync"/>, one at a time, so that the root never touches a running guest's memory.
/// </summary>
internal sealed class Enlightenments
{
    /// <summary>Requests a partition may have queued for the root before HvPostMessage reports HV_STATUS_INSUFFICIENT_BUFFERS.</summary>
    public const int MaxQueuedPerPartition = EnlightenedState.MaxPendingRequests;

    private readonly PartitionTable _partitions;
    private readonly long _exitCostTicks;
    private readonly Messaging.MessagePort<VmBusRequest> _toRoot;
    private readonly Messaging.MessagePort<VmBusRequest> _done;
    private readonly MsrHandler _msrs;
    private readonly HypercallHandler _hypercalls;
    private readonly List<VmBusRequest> _queue = new();

    internal Enlightenments(PartitionTable partitions, long exitCostTicks, Messaging.MessagePort<VmBusRequest> toRoot, Messaging.MessagePort<VmBusRequest> done)
    {
        _partitions = partitions;
        _exitCostTicks = exitCostTicks;
        _toRoot = toRoot;
        _done = done;
        _msrs = new MsrHandler(partitions);
        _hypercalls = new HypercallHandler(partitions, this);
    }

    /// <summary>Virtual time of the request the root is serving (its effects on guests are stamped with it); -1 between requests.</summary>
    internal long CurrentRequestTime { get; private set; } = -1;

    /// <summary>Serves one RDMSR, WRMSR or VMCALL exit; returns its cost in virtual ticks.</summary>
    public long Handle(Partition partition, VirtualProcessor vp, in CpuExit exit)
    {
        X86Core core = vp.Core;
        switch (exit.Reason)
        {
            case CpuExitReason.Rdmsr:
                partition.Statistics.CountIntercept("rdmsr");
                _msrs.Read(partition, vp, exit.Value);
                break;
            case CpuExitReason.Wrmsr:
                partition.Statistics.CountIntercept("wrmsr");
                _msrs.Write(partition, vp, exit.Value, ((ulong)core[Gpr.Edx] << 32) | core[Gpr.Eax]);
                break;
            default:
                if (!partition.Hv.HypercallPageEnabled)
                {
                    // VMCALL with no hypercall page is an invalid opcode (TLFS 3.13).
                    partition.Statistics.CountIntercept("hypercall");
                    core.InjectException(ExceptionVector.InvalidOpcode);
                    break;
                }

                _hypercalls.Dispatch(partition, vp);
                break;
        }

        return _exitCostTicks;
    }

    internal HvStatus QueueForRoot(Partition partition, VirtualProcessor vp, VmBusRequestKind kind, uint connection, uint type, byte[] payload)
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

            _queue.Add(new VmBusRequest(partition.Id, vp.Index, _partitions.Now(vp), kind, connection, type, payload));
        }

        partition.Statistics.ChannelMessages++;
        return HvStatus.Success;
    }

    public bool HasQueuedRequests => _queue.Count > 0;

    /// <summary>The partition's requests still waiting for the root, in order (a snapshot taken between two barriers).</summary>
    internal List<PendingRootRequest> PendingFor(Partition partition)
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
    internal void Requeue(Partition partition, IEnumerable<PendingRootRequest> requests)
    {
        // Restores may run on another thread than the scheduler (a restore beside running guests).
        lock (_queue)
        {
            foreach (PendingRootRequest r in requests)
            {
                _queue.Add(new VmBusRequest(partition.Id, r.VpIndex, _partitions.Now(partition), r.Kind, r.ConnectionId, r.MessageType, r.Payload.ToArray()));
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
            await _toRoot.SendAsync(request, cancellationToken).ConfigureAwait(false);
            await _done.ReceiveAsync(cancellationToken).ConfigureAwait(false);
        }

        CurrentRequestTime = -1;
    }
}
