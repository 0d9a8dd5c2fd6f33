using HybridVmm.Hardware.SavedState;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// Chunk "root.requests": guest messages and signals the kernel queued for the root's VMBus server and the root
/// had not served when the VM was saved, in queue order (at most <see cref="EnlightenedState.MaxPendingRequests"/>).
/// </summary>
public sealed class PendingRootRequestsCodec : StateCodec<IReadOnlyList<PendingRootRequest>>
{
    public const string Tag = "root.requests";

    public const int MaxPayload = 4096;

    public static readonly PendingRootRequestsCodec Instance = new();

    public override string StateName => "pending root request";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, IReadOnlyList<PendingRootRequest> requests)
    {
        w.WriteCount(requests.Count);
        foreach (PendingRootRequest r in requests)
        {
            w.WriteInt32(r.VpIndex);
            w.WriteInt32((int)r.Kind);
            w.WriteUInt32(r.ConnectionId);
            w.WriteUInt32(r.MessageType);
            w.WriteBlob(r.Payload);
        }
    }

    public override IReadOnlyList<PendingRootRequest> Read(SavedStateReader r, int version)
    {
        var pending = new PendingRootRequest[r.ReadCount(EnlightenedState.MaxPendingRequests, 20)];
        for (int i = 0; i < pending.Length; i++)
        {
            int vp = r.ReadInt32();
            var kind = (VmBusRequestKind)r.ReadInt32();
            uint connection = r.ReadUInt32();
            uint type = r.ReadUInt32();
            pending[i] = new PendingRootRequest(vp, kind, connection, type, r.ReadBlob(MaxPayload));
        }

        return pending;
    }
}
