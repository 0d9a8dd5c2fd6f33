using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor.Hypercalls;

/// <summary>The partition-wide synthetic state: guest OS ID, the hypercall page, privileges, grants and connections (TLFS 3.13, 11.10).</summary>
public sealed class HvPartitionState
{
    /// <summary>The connection ID every partition has to the root's VMBus server (VMBUS_MESSAGE_CONNECTION_ID in Hyper-V).</summary>
    public const uint VmBusMessageConnectionId = 1;

    private readonly HashSet<uint> _eventConnections = new();

    public ulong GuestOsId { get; internal set; }

    public ulong HypercallMsr { get; internal set; }

    public bool HypercallPageEnabled => (HypercallMsr & 1) != 0;

    public HvPartitionPrivileges Privileges { get; internal set; } = HvPartitionPrivileges.Child;

    public GpadlTable Gpadls { get; } = new();

    /// <summary>Event connections the root created for this partition (one per open channel).</summary>
    public bool HasEventConnection(uint connectionId)
    {
        lock (_eventConnections) return _eventConnections.Contains(connectionId);
    }

    internal void AddEventConnection(uint connectionId)
    {
        lock (_eventConnections) _eventConnections.Add(connectionId);
    }

    internal void RemoveEventConnection(uint connectionId)
    {
        lock (_eventConnections) _eventConnections.Remove(connectionId);
    }
}
