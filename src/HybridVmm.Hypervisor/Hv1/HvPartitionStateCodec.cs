using HybridVmm.Hardware.SavedState;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor.Hv1;

/// <summary>
/// Chunk "hv.partition": the partition's synthetic MSRs (guest OS ID, hypercall page), its privileges, the
/// guest's grants (GPADLs) and the event connections the root created. Counts are bounded by the kernel's limits.
/// Version 2 adds the ports connected inside the partition (TLFS 11.10): a count, then per port the connection ID (u32),
/// the type (u8), the target vCPU, SINT and base flag (i32 each). Version 3 adds HV_X64_MSR_REFERENCE_TSC (u64, TLFS
/// chapter 12, "Reference TSC Page MSR"). Versions 1 and 2 are still read (the MSR then 0: no reference TSC page).
/// </summary>
public sealed class HvPartitionStateCodec : StateCodec<HvPartitionSavedState>
{
    public const string Tag = "hv.partition";

    /// <summary>Event connections a partition may hold in a saved state.</summary>
    public const int MaxEventConnections = 1 << 16;

    public static readonly HvPartitionStateCodec Instance = new();

    public override string StateName => "hypervisor partition";

    public override int Version => 3;

    public override bool CanRead(int version) => version is 1 or 2 or 3;

    public override void Write(SavedStateWriter w, HvPartitionSavedState hv)
    {
        w.WriteUInt64(hv.GuestOsId);
        w.WriteUInt64(hv.HypercallMsr);
        w.WriteUInt64((ulong)hv.Privileges);
        w.WriteCount(hv.Gpadls.Count);
        foreach (GpadlState gpadl in hv.Gpadls)
        {
            w.WriteUInt32(gpadl.Id);
            w.WriteInt32(gpadl.ExpectedPages);
            w.WriteCount(gpadl.Pages.Count);
            foreach (uint page in gpadl.Pages)
            {
                w.WriteUInt32(page);
            }
        }

        w.WriteCount(hv.EventConnections.Count);
        foreach (uint connection in hv.EventConnections)
        {
            w.WriteUInt32(connection);
        }

        IReadOnlyList<HvPortInfo> ports = hv.Ports ?? [];
        w.WriteCount(ports.Count);
        foreach (HvPortInfo port in ports)
        {
            w.WriteUInt32(port.ConnectionId);
            w.WriteByte((byte)port.Type);
            w.WriteInt32(port.TargetVp);
            w.WriteInt32(port.TargetSint);
            w.WriteInt32(port.BaseFlagNumber);
        }

        w.WriteUInt64(hv.ReferenceTscMsr);
    }

    public override HvPartitionSavedState Read(SavedStateReader r, int version)
    {
        ulong guestOsId = r.ReadUInt64();
        ulong hypercallMsr = r.ReadUInt64();
        var privileges = (HvPartitionPrivileges)r.ReadUInt64();
        var gpadls = new GpadlState[r.ReadCount(GpadlTable.MaxGpadls, 12)];
        for (int i = 0; i < gpadls.Length; i++)
        {
            uint id = r.ReadUInt32();
            int expected = r.ReadInt32();
            var pages = new uint[r.ReadCount(GpadlTable.MaxPagesPerGpadl, 4)];
            for (int p = 0; p < pages.Length; p++)
            {
                pages[p] = r.ReadUInt32();
            }

            gpadls[i] = new GpadlState(id, expected, pages);
        }

        var connections = new uint[r.ReadCount(MaxEventConnections, 4)];
        for (int i = 0; i < connections.Length; i++)
        {
            connections[i] = r.ReadUInt32();
        }

        HvPortInfo[] ports = [];
        if (version >= 2)
        {
            ports = new HvPortInfo[r.ReadCount(HvPartitionState.MaxPorts, 17)];
            for (int i = 0; i < ports.Length; i++)
            {
                uint connection = r.ReadUInt32();
                var type = (HvPortType)r.ReadByte();
                ports[i] = new HvPortInfo(connection, type, r.ReadInt32(), r.ReadInt32(), r.ReadInt32());
            }
        }

        ulong referenceTsc = version >= 3 ? r.ReadUInt64() : 0;
        return new HvPartitionSavedState(guestOsId, hypercallMsr, privileges, gpadls, connections, ports, referenceTsc);
    }
}
