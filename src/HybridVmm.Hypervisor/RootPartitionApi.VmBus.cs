using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Hypervisor.VmBus;

namespace HybridVmm.Hypervisor;

/// <summary>
/// The root's side of the synthetic interface: receive guests' VMBus messages and signals, post messages and
/// signal events back through the guest's SynIC, create event connections, and reach guest memory only
/// through the pages a guest granted (its GPADLs). Any other access is refused and traced.
/// </summary>
public sealed partial class RootPartitionApi
{
    /// <summary>Guests' HvPostMessage (VMBus connection) and HvSignalEvent requests, in deterministic order.</summary>
    public MessagePort<VmBusRequest> VmBusRequests => _kernel.VmBusPort;

    /// <summary>Tells the kernel the root finished <paramref name="request"/>; the guest's vCPUs may run again.</summary>
    public ValueTask CompleteVmBusRequestAsync(VmBusRequest request, CancellationToken cancellationToken = default) =>
        _kernel.VmBusDonePort.SendAsync(request, cancellationToken);

    /// <summary>Virtual time of the request being served (the root's effects on guests are stamped with it); -1 between requests.</summary>
    public long VmBusTime => _kernel.Enlightenments.RootRequests.CurrentRequestTime;

    /// <summary>
    /// Posts a message to the guest's SynIC (vCPU 0) on <paramref name="sint"/>, as the hypervisor does for the
    /// root's HvPostMessage. Like every call here that touches a guest, it is meant for the VMBus server while it
    /// serves a <see cref="VmBusRequest"/>: the kernel then guarantees that no vCPU runs.
    /// </summary>
    public HvStatus PostMessageToGuest(PartitionHandle partitionHandle, int sint, uint messageType, ReadOnlySpan<byte> payload)
    {
        Partition partition = Get(partitionHandle);
        if (partition.IsRoot || partition.VirtualProcessors.Count == 0) return HvStatus.InvalidParameter;
        HvStatus status = partition.VirtualProcessors[0].Synic.PostMessage(sint, messageType, payload, sender: 0);
        partition.Statistics.ChannelMessages++;
        TraceSynic(partition, $"message sint={sint} type={messageType} size={payload.Length} -> {HvStatusNames.Name(status)}");
        return status;
    }

    /// <summary>Sets an event flag in the guest's SIEF page and asserts the SINT (the root's HvSignalEvent toward a guest).</summary>
    public HvStatus SignalGuestEvent(PartitionHandle partitionHandle, int sint, int flag)
    {
        Partition partition = Get(partitionHandle);
        if (partition.IsRoot || partition.VirtualProcessors.Count == 0) return HvStatus.InvalidParameter;
        HvStatus status = partition.VirtualProcessors[0].Synic.SignalEvent(sint, flag);
        partition.Statistics.ChannelMessages++;
        TraceSynic(partition, $"event sint={sint} flag={flag} -> {HvStatusNames.Name(status)}");
        return status;
    }

    /// <summary>Sets what the partition may do through synthetic MSRs and hypercalls (TLFS partition privileges).</summary>
    public void SetPrivileges(PartitionHandle partitionHandle, HvPartitionPrivileges privileges) => Get(partitionHandle).Hv.Privileges = privileges;

    /// <summary>Lets the guest signal the root on <paramref name="connectionId"/> with HvSignalEvent.</summary>
    public void CreateEventConnection(PartitionHandle partitionHandle, uint connectionId) => Get(partitionHandle).Hv.AddEventConnection(connectionId);

    public void DeleteEventConnection(PartitionHandle partitionHandle, uint connectionId) => Get(partitionHandle).Hv.RemoveEventConnection(connectionId);

    /// <summary>The size of a complete GPADL the guest created, or -1.</summary>
    public long GpadlSize(PartitionHandle partitionHandle, uint gpadlId) =>
        Get(partitionHandle).Hv.Gpadls.TryGet(gpadlId, out Gpadl gpadl) ? gpadl.SizeBytes : -1;

    /// <summary>Reads from a GPADL's buffer at <paramref name="offset"/>: only its pages can be reached.</summary>
    public bool ReadGpadl(PartitionHandle partitionHandle, uint gpadlId, long offset, Span<byte> destination) =>
        CopyGpadl(Get(partitionHandle), gpadlId, offset, destination, ReadOnlySpan<byte>.Empty, write: false);

    /// <summary>Writes into a GPADL's buffer at <paramref name="offset"/>: only its pages can be reached.</summary>
    public bool WriteGpadl(PartitionHandle partitionHandle, uint gpadlId, long offset, ReadOnlySpan<byte> source) =>
        CopyGpadl(Get(partitionHandle), gpadlId, offset, Span<byte>.Empty, source, write: true);

    private bool CopyGpadl(Partition partition, uint gpadlId, long offset, Span<byte> destination, ReadOnlySpan<byte> source, bool write)
    {
        int length = write ? source.Length : destination.Length;
        if (!partition.Hv.Gpadls.TryGet(gpadlId, out Gpadl gpadl) || offset < 0 || offset + length > gpadl.SizeBytes
            || partition.AddressSpace is not { } space)
        {
            RefuseAccess(partition, $"refused root {(write ? "write" : "read")} gpadl={gpadlId} offset=0x{offset:x} size={length} (no such granted range)");
            return false;
        }

        int done = 0;
        while (done < length)
        {
            long at = offset + done;
            uint gpa = (gpadl.Pages[(int)(at >> 12)] << 12) | (uint)(at & 0xFFF);
            int chunk = Math.Min(length - done, 4096 - (int)(at & 0xFFF));
            bool ok = write ? space.TryWrite(gpa, source.Slice(done, chunk)) : space.TryRead(gpa, destination.Slice(done, chunk));
            if (!ok) return false;
            done += chunk;
        }

        return true;
    }

    /// <summary>Root access by guest-physical address, allowed only inside pages a GPADL grants.</summary>
    public bool ReadGrantedMemory(PartitionHandle partitionHandle, uint gpa, Span<byte> destination)
    {
        Partition partition = Get(partitionHandle);
        if (!partition.Hv.Gpadls.IsGranted(gpa, destination.Length))
        {
            RefuseAccess(partition, $"refused root read gpa=0x{gpa:x8} size={destination.Length} (not granted)");
            return false;
        }

        return partition.AddressSpace is { } space && space.TryRead(gpa, destination);
    }

    public bool WriteGrantedMemory(PartitionHandle partitionHandle, uint gpa, ReadOnlySpan<byte> source)
    {
        Partition partition = Get(partitionHandle);
        if (!partition.Hv.Gpadls.IsGranted(gpa, source.Length))
        {
            RefuseAccess(partition, $"refused root write gpa=0x{gpa:x8} size={source.Length} (not granted)");
            return false;
        }

        return partition.AddressSpace is { } space && space.TryWrite(gpa, source);
    }

    private void RefuseAccess(Partition partition, string details)
    {
        _kernel.Trace.Record(RootEventTime(partition), partition.Id, -1, TraceKind.Grant, details);
    }

    private void TraceSynic(Partition partition, string details)
    {
        if (_kernel.Trace.Enabled)
        {
            _kernel.Trace.Record(RootEventTime(partition), partition.Id, 0, TraceKind.Synic, details);
        }
    }

    private long RootEventTime(Partition partition) =>
        _kernel.Enlightenments.RootRequests.CurrentRequestTime >= 0 ? _kernel.Enlightenments.RootRequests.CurrentRequestTime : _kernel.Now(partition);
}
