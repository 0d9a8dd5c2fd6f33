using HybridVmm.Hardware.SavedState;
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
internal static partial class SnapshotFormatV2
{
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

    private static ChannelState[] ReadChannels(BinaryReader r)
    {
        var channels = new ChannelState[Count(r, 64)];
        for (int i = 0; i < channels.Length; i++)
        {
            uint relid = r.ReadUInt32();
            string device = r.ReadString();
            channels[i] = new ChannelState(
                RelId: relid, Device: device, InstanceId: new Guid(ReadExactly(r, 16)), Open: r.ReadBoolean(),
                Gpadl: r.ReadUInt32(), InboundPageOffset: r.ReadInt32(), SignalPending: r.ReadBoolean(), Packets: r.ReadInt64(),
                DeviceState: new SavedStateChunk(ChannelStateCodec.DeviceTag(relid, device), 1, ReadBlob(r, 1 << 20)));
        }

        return channels;
    }

    private static byte[] ReadBlob(BinaryReader r, int max) => ReadExactly(r, Count(r, max));

    private static byte[] ReadExactly(BinaryReader r, int count)
    {
        byte[] bytes = r.ReadBytes(count);
        return bytes.Length == count ? bytes : throw new EndOfStreamException();
    }
}
