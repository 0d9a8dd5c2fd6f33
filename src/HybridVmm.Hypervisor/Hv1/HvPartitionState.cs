using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor.Hv1;

/// <summary>The partition-wide synthetic state: guest OS ID, the hypercall page, privileges, grants and connections (TLFS 3.13, 11.10).</summary>
internal sealed class HvPartitionState
{
    /// <summary>The connection ID every partition has to the root's VMBus server (VMBUS_MESSAGE_CONNECTION_ID in Hyper-V).</summary>
    public const uint VmBusMessageConnectionId = 1;

    private readonly HashSet<uint> _eventConnections = new();

    // Ports of this partition the root connected to connection IDs of the same partition; touched on the scheduler thread.
    private readonly SortedDictionary<uint, HvPortInfo> _ports = new();

    /// <summary>The most ports a partition may have connected.</summary>
    public const int MaxPorts = 1024;

    public ulong GuestOsId { get; internal set; }

    public ulong HypercallMsr { get; internal set; }

    public bool HypercallPageEnabled => (HypercallMsr & 1) != 0;

    /// <summary>HV_X64_MSR_REFERENCE_TSC: bit 0 enables the reference TSC page, bits 63:12 its GPA (TLFS chapter 12, "Reference TSC Page MSR").</summary>
    public ulong ReferenceTscMsr { get; internal set; }

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

    /// <summary>The port a guest's HvPostMessage or HvSignalEvent on <paramref name="connectionId"/> reaches, if any.</summary>
    public HvPortInfo? FindPort(uint connectionId) => _ports.GetValueOrDefault(connectionId);

    /// <summary>Connects a port; false when the connection ID is taken or the partition has its most ports.</summary>
    internal bool AddPort(HvPortInfo port) => _ports.Count < MaxPorts && _ports.TryAdd(port.ConnectionId, port);

    internal bool RemovePort(uint connectionId) => _ports.Remove(connectionId);

    /// <summary>The partition-wide synthetic state for a snapshot. The hypercall page's code is in guest RAM.</summary>
    public HvPartitionSavedState SaveState()
    {
        uint[] connections;
        lock (_eventConnections) connections = _eventConnections.Order().ToArray();
        return new HvPartitionSavedState(GuestOsId, HypercallMsr, Privileges, Gpadls.SaveState(), connections, _ports.Values.ToArray(), ReferenceTscMsr);
    }

    /// <summary>Replaces this state with a saved one; the caller has checked the GPADL pages against the partition's RAM.</summary>
    internal void RestoreState(HvPartitionSavedState state)
    {
        GuestOsId = state.GuestOsId;
        HypercallMsr = state.HypercallMsr;
        ReferenceTscMsr = state.ReferenceTscMsr;
        Privileges = state.Privileges;
        Gpadls.RestoreState(state.Gpadls);
        lock (_eventConnections)
        {
            _eventConnections.Clear();
            _eventConnections.UnionWith(state.EventConnections);
        }

        _ports.Clear();
        foreach (HvPortInfo port in state.Ports ?? [])
        {
            _ports[port.ConnectionId] = port;
        }
    }
}

/// <summary>
/// <see cref="HvPartitionState"/> as a value: the synthetic MSRs (guest OS ID, hypercall MSR), the privileges,
/// the guest's grants, the event connections the root created, the ports the root connected inside the partition
/// (null in snapshots older than them), and HV_X64_MSR_REFERENCE_TSC (0 in snapshots older than it; the page itself is
/// guest RAM).
/// </summary>
public sealed record HvPartitionSavedState(
    ulong GuestOsId,
    ulong HypercallMsr,
    HvPartitionPrivileges Privileges,
    IReadOnlyList<GpadlState> Gpadls,
    IReadOnlyList<uint> EventConnections,
    IReadOnlyList<HvPortInfo>? Ports = null,
    ulong ReferenceTscMsr = 0);
