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

    /// <summary>
    /// Connects <paramref name="connectionId"/> of the partition to a port of its own (HvCreatePort and HvConnectPort, TLFS
    /// 11.10): a guest's HvPostMessage on it then lands in the message slot of <paramref name="sint"/> on vCPU
    /// <paramref name="vpIndex"/>, or its HvSignalEvent sets event flag <paramref name="flag"/> there, with no root
    /// involved. Like <see cref="AssertInterrupt"/>, it takes effect before the intercept being served completes, or at the
    /// next barrier. False for a vCPU, SINT or flag out of range.
    /// </summary>
    public bool ConnectPort(PartitionHandle partitionHandle, uint connectionId, HvPortType type, int vpIndex, int sint, int flag = 0)
    {
        Partition p = Get(partitionHandle);
        if (p.IsRoot || connectionId == HvPartitionState.VmBusMessageConnectionId || (uint)vpIndex >= (uint)p.VirtualProcessors.Count
            || (uint)sint >= SynIc.HvMessageLayout.SintCount || (uint)flag >= SynIc.HvMessageLayout.FlagsPerSint || !Enum.IsDefined(type))
        {
            return false;
        }

        _kernel.Interrupts.PostConnectPort(p.Id, new HvPortInfo(connectionId, type, vpIndex, sint, type == HvPortType.Event ? flag : 0));
        DeliverOrWake();
        return true;
    }

    /// <summary>Disconnects the port of <paramref name="connectionId"/> (HvDisconnectPort), in the same order as <see cref="ConnectPort"/>.</summary>
    public void DisconnectPort(PartitionHandle partitionHandle, uint connectionId)
    {
        _kernel.Interrupts.PostDisconnectPort(Get(partitionHandle).Id, connectionId);
        DeliverOrWake();
    }

    /// <summary>
    /// Raises <paramref name="sint"/> of vCPU <paramref name="vpIndex"/>'s SynIC with no message or event flag, the way a
    /// device's interrupt route to a SINT does (KVM's irqfd to a SINT, which QEMU's hyperv-testdev drives). A masked SINT
    /// loses it. Delivered as <see cref="AssertInterrupt"/> is. False for a vCPU or SINT out of range.
    /// </summary>
    public bool AssertSynicInterrupt(PartitionHandle partitionHandle, int vpIndex, int sint)
    {
        Partition p = Get(partitionHandle);
        if (p.IsRoot || (uint)vpIndex >= (uint)p.VirtualProcessors.Count || (uint)sint >= SynIc.HvMessageLayout.SintCount)
        {
            return false;
        }

        _kernel.Interrupts.PostSint(p.Id, vpIndex, sint);
        DeliverOrWake();
        return true;
    }

    private void DeliverOrWake()
    {
        if (!_kernel.Scheduler.IsRunning)
        {
            _kernel.Completion.DeliverPostedInterrupts(); // nothing runs a vCPU now: at once
        }
        else
        {
            _kernel.Scheduler.Wake();
        }
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
            ulong gpa = ((ulong)gpadl.Pages[(int)(at >> 12)] << 12) | (ulong)(at & 0xFFF);
            int chunk = Math.Min(length - done, 4096 - (int)(at & 0xFFF));
            bool ok = write ? space.TryWrite(gpa, source.Slice(done, chunk)) : space.TryRead(gpa, destination.Slice(done, chunk));
            if (!ok) return false;
            done += chunk;
        }

        return true;
    }

    /// <summary>Root access by guest-physical address, allowed only inside pages a GPADL grants.</summary>
    public bool ReadGrantedMemory(PartitionHandle partitionHandle, ulong gpa, Span<byte> destination)
    {
        Partition partition = Get(partitionHandle);
        if (!partition.Hv.Gpadls.IsGranted(gpa, destination.Length))
        {
            RefuseAccess(partition, $"refused root read gpa=0x{gpa:x8} size={destination.Length} (not granted)");
            return false;
        }

        return partition.AddressSpace is { } space && space.TryRead(gpa, destination);
    }

    public bool WriteGrantedMemory(PartitionHandle partitionHandle, ulong gpa, ReadOnlySpan<byte> source)
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
