namespace HybridVmm.Hypervisor.VmBus;

public enum VmBusRequestKind
{
    /// <summary>HvPostMessage to the root's VMBus message connection: <see cref="VmBusRequest.Payload"/> holds the message.</summary>
    Message,
    /// <summary>HvSignalEvent on a channel's event connection: the guest put something in a ring.</summary>
    Signal,
}

/// <summary>
/// What the kernel passes to the root's VMBus server for a guest's HvPostMessage or HvSignalEvent. The kernel
/// sends them at the scheduler's pass barrier, in (partition, order of the calls) order, and waits for the
/// root to finish each one before any vCPU runs again: the root touches guest memory only while the guest is
/// stopped, which keeps every run deterministic.
/// </summary>
public sealed record VmBusRequest(int PartitionId, int VpIndex, long VirtualTime, VmBusRequestKind Kind, uint ConnectionId, uint MessageType, byte[] Payload);
