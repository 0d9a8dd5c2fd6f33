namespace HybridVmm.Hypervisor.Hv1;

/// <summary>HV_PORT_TYPE (TLFS 11.10.1): what a connection's port delivers.</summary>
public enum HvPortType : byte
{
    Message = 1,
    Event = 2,
}

/// <summary>
/// A port in a partition and the connection to it (HvCreatePort and HvConnectPort, TLFS 11.10), flattened to what a
/// guest's HvPostMessage or HvSignalEvent on <paramref name="ConnectionId"/> reaches: a message port, the message slot
/// of <paramref name="TargetSint"/> on vCPU <paramref name="TargetVp"/>; an event port, one event flag there
/// (<paramref name="BaseFlagNumber"/>, a port of one flag: the guest's FlagNumber must be 0).
/// </summary>
public sealed record HvPortInfo(uint ConnectionId, HvPortType Type, int TargetVp, int TargetSint, int BaseFlagNumber = 0);
