using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.SynIc;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// What the kernel holds for a partition beyond its RAM and vCPU registers, as a value (the kernel's share of a
/// saved state): the synthetic MSRs, grants and event connections, each vCPU's SynIC and whether it sits in HLT,
/// and guest requests queued for the root that the root has not served yet.
/// </summary>
public sealed record EnlightenedState(
    HvPartitionSavedState Partition,
    IReadOnlyList<VpEnlightenedState> VirtualProcessors,
    IReadOnlyList<PendingRootRequest> PendingRequests)
{
    /// <summary>At most this many requests wait for the root per partition (HV_STATUS_INSUFFICIENT_BUFFERS beyond).</summary>
    public const int MaxPendingRequests = 16;
}

/// <summary>
/// One vCPU: halted (waiting in HLT for an interrupt) or not, its SynIC, its local APIC (null in a snapshot taken
/// before the APIC existed: the vCPU then gets the power-on APIC), and its run state beyond HLT (null in a snapshot
/// of one vCPU or of an older build: runnable or halted as <paramref name="Halted"/> says, at the start of a round).
/// </summary>
public sealed record VpEnlightenedState(bool Halted, SynicState Synic, Apic.LocalApicState? Apic = null, VpRunState? Run = null);

/// <summary>A guest's HvPostMessage or HvSignalEvent the kernel queued for the root's VMBus server (see <see cref="VmBusRequest"/>).</summary>
public sealed record PendingRootRequest(int VpIndex, VmBusRequestKind Kind, uint ConnectionId, uint MessageType, byte[] Payload);
