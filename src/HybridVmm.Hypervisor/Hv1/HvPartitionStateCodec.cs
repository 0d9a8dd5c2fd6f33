using HybridVmm.Hardware.SavedState;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor.Hv1;

/// <summary>
/// Chunk "hv.partition": the partition's synthetic MSRs (guest OS ID, hypercall page), its privileges, the
/// guest's grants (GPADLs) and the event connections the root created. Counts are bounded by the kernel's limits.
/// </summary>
public sealed class HvPartitionStateCodec : StateCodec<HvPartitionSavedState>
{
    public const string Tag = "hv.partition";

    /// <summary>Event connections a partition may hold in a saved state.</summary>
    public const int MaxEventConnections = 1 << 16;

    public static readonly HvPartitionStateCodec Instance = new();

    public override string StateName => "hypervisor partition";

    public override int Version => 1;

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

        return new HvPartitionSavedState(guestOsId, hypercallMsr, privileges, gpadls, connections);
    }
}
