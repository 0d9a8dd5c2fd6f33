using HybridVmm.HostOS.VmBus;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.SynIc;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// The payload sections format version 2 added: the kernel's synthetic state (<see cref="EnlightenedState"/>) and
/// the root's VMBus channels (<see cref="ChannelState"/>). Counts are bounded by the kernel's own limits, so a
/// malformed count is caught before it allocates.
/// </summary>
public static partial class SnapshotFormat
{
    private static void WriteEnlightened(BinaryWriter w, EnlightenedState e)
    {
        HvPartitionSavedState hv = e.Partition;
        w.Write(hv.GuestOsId);
        w.Write(hv.HypercallMsr);
        w.Write((ulong)hv.Privileges);
        w.Write(hv.Gpadls.Count);
        foreach (GpadlState gpadl in hv.Gpadls)
        {
            w.Write(gpadl.Id);
            w.Write(gpadl.ExpectedPages);
            w.Write(gpadl.Pages.Count);
            foreach (uint page in gpadl.Pages)
            {
                w.Write(page);
            }
        }

        w.Write(hv.EventConnections.Count);
        foreach (uint connection in hv.EventConnections)
        {
            w.Write(connection);
        }

        w.Write(e.VirtualProcessors.Count);
        foreach (VpEnlightenedState vp in e.VirtualProcessors)
        {
            w.Write(vp.Halted);
            SynicState synic = vp.Synic;
            w.Write(synic.SControl);
            w.Write(synic.Simp);
            w.Write(synic.Siefp);
            w.Write(synic.Sints.Count);
            foreach (ulong sint in synic.Sints)
            {
                w.Write(sint);
            }

            w.Write(synic.Queued.Count);
            foreach (SynicQueuedMessage m in synic.Queued)
            {
                w.Write(m.Sint);
                w.Write(m.MessageType);
                w.Write(m.Sender);
                WriteBlob(w, m.Payload);
            }
        }

        w.Write(e.PendingRequests.Count);
        foreach (PendingRootRequest r in e.PendingRequests)
        {
            w.Write(r.VpIndex);
            w.Write((int)r.Kind);
            w.Write(r.ConnectionId);
            w.Write(r.MessageType);
            WriteBlob(w, r.Payload);
        }
    }

    private static EnlightenedState ReadEnlightened(BinaryReader r)
    {
        ulong guestOsId = r.ReadUInt64();
        ulong hypercallMsr = r.ReadUInt64();
        var privileges = (HvPartitionPrivileges)r.ReadUInt64();
        var gpadls = new GpadlState[Count(r, GpadlLimits.MaxGpadls)];
        for (int i = 0; i < gpadls.Length; i++)
        {
            uint id = r.ReadUInt32();
            int expected = r.ReadInt32();
            var pages = new uint[Count(r, GpadlLimits.MaxPagesPerGpadl)];
            for (int p = 0; p < pages.Length; p++)
            {
                pages[p] = r.ReadUInt32();
            }

            gpadls[i] = new GpadlState(id, expected, pages);
        }

        var connections = new uint[Count(r, 1 << 16)];
        for (int i = 0; i < connections.Length; i++)
        {
            connections[i] = r.ReadUInt32();
        }

        var vps = new VpEnlightenedState[Count(r, 64)];
        for (int i = 0; i < vps.Length; i++)
        {
            bool halted = r.ReadBoolean();
            ulong scontrol = r.ReadUInt64(), simp = r.ReadUInt64(), siefp = r.ReadUInt64();
            var sints = new ulong[Count(r, HvMessageLayout.SintCount)];
            for (int s = 0; s < sints.Length; s++)
            {
                sints[s] = r.ReadUInt64();
            }

            var queued = new SynicQueuedMessage[Count(r, HvMessageLayout.SintCount * HvMessageLayout.QueueLimit)];
            for (int q = 0; q < queued.Length; q++)
            {
                int sint = r.ReadInt32();
                uint type = r.ReadUInt32();
                ulong sender = r.ReadUInt64();
                queued[q] = new SynicQueuedMessage(sint, type, ReadBlob(r, HvMessageLayout.MaxPayload), sender);
            }

            vps[i] = new VpEnlightenedState(halted, new SynicState(scontrol, simp, siefp, sints, queued));
        }

        var pending = new PendingRootRequest[Count(r, EnlightenedState.MaxPendingRequests)];
        for (int i = 0; i < pending.Length; i++)
        {
            int vp = r.ReadInt32();
            var kind = (VmBusRequestKind)r.ReadInt32();
            uint connection = r.ReadUInt32();
            uint type = r.ReadUInt32();
            pending[i] = new PendingRootRequest(vp, kind, connection, type, ReadBlob(r, 4096));
        }

        return new EnlightenedState(new HvPartitionSavedState(guestOsId, hypercallMsr, privileges, gpadls, connections), vps, pending);
    }

    private static void WriteChannels(BinaryWriter w, IReadOnlyList<ChannelState> channels)
    {
        w.Write(channels.Count);
        foreach (ChannelState c in channels)
        {
            w.Write(c.RelId);
            w.Write(c.Device);
            w.Write(c.InstanceId.ToByteArray());
            w.Write(c.Open);
            w.Write(c.Gpadl);
            w.Write(c.InboundPageOffset);
            w.Write(c.SignalPending);
            w.Write(c.Packets);
            WriteBlob(w, c.DeviceState);
        }
    }

    private static ChannelState[] ReadChannels(BinaryReader r)
    {
        var channels = new ChannelState[Count(r, 64)];
        for (int i = 0; i < channels.Length; i++)
        {
            channels[i] = new ChannelState(
                RelId: r.ReadUInt32(), Device: r.ReadString(), InstanceId: new Guid(ReadExactly(r, 16)), Open: r.ReadBoolean(),
                Gpadl: r.ReadUInt32(), InboundPageOffset: r.ReadInt32(), SignalPending: r.ReadBoolean(), Packets: r.ReadInt64(),
                DeviceState: ReadBlob(r, 1 << 20));
        }

        return channels;
    }

    private static void WriteBlob(BinaryWriter w, byte[] bytes)
    {
        w.Write(bytes.Length);
        w.Write(bytes);
    }

    private static byte[] ReadBlob(BinaryReader r, int max) => ReadExactly(r, Count(r, max));

    private static byte[] ReadExactly(BinaryReader r, int count)
    {
        byte[] bytes = r.ReadBytes(count);
        return bytes.Length == count ? bytes : throw new EndOfStreamException();
    }
}
