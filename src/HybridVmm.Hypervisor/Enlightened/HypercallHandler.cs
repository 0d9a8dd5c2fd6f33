using System.Buffers.Binary;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.SynIc;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Hypervisor.VmBus;

using HybridVmm.Hypervisor.Hv1;

namespace HybridVmm.Hypervisor.Enlightened;

/// <summary>
/// VMCALL from the hypercall page (TLFS chapter 3), 32-bit register convention: EDX:EAX the control word,
/// EBX:ECX the input GPA (or, for a fast call, the first 8 input bytes), EDI:ESI the output GPA (or the next
/// 8 input bytes); the result value comes back in EDX:EAX. Every invalid input returns a status code: the
/// guest is never faulted and the simulator never throws.
/// </summary>
internal sealed class HypercallHandler(PartitionTable partitions, RootRequestQueue rootRequests)
{
    private const int PageSize = 4096;

    public void Dispatch(Partition partition, VirtualProcessor vp)
    {
        X86Core core = vp.Core;
        var control = new HypercallControl(((ulong)core[Gpr.Edx] << 32) | core[Gpr.Eax]);
        ulong inputRegisterOrGpa = ((ulong)core[Gpr.Ebx] << 32) | core[Gpr.Ecx];
        ulong outputRegisterOrGpa = ((ulong)core[Gpr.Edi] << 32) | core[Gpr.Esi];
        partition.Statistics.CountIntercept("hypercall");

        (HvStatus status, int reps, string what) = Validate(partition, control)
            ?? control.CallCode switch
            {
                HvCallCode.PostMessage => PostMessage(partition, vp, control, inputRegisterOrGpa),
                HvCallCode.SignalEvent => SignalEvent(partition, vp, control, inputRegisterOrGpa),
                HvCallCode.CreateGpadl => CreateGpadl(partition, control, inputRegisterOrGpa),
                HvCallCode.DeleteGpadl => DeleteGpadl(partition, inputRegisterOrGpa),
                _ => (HvStatus.InvalidHypercallCode, 0, ""),
            };
        _ = outputRegisterOrGpa; // none of the implemented calls has output parameters

        ulong result = HypercallControl.Result(status, reps);
        core[Gpr.Eax] = (uint)result;
        core[Gpr.Edx] = (uint)(result >> 32);
        core.CompleteHypercall();
        if (partitions.Trace.Enabled)
        {
            string rep = control.RepCount > 0 ? $" reps={control.RepStartIndex}..{control.RepCount} completed={reps}" : "";
            partitions.Trace.Record(partitions.Now(vp), partition.Id, vp.Index, TraceKind.Hypercall,
                $"{HvCallCode.Name(control.CallCode)}{(control.Fast ? " fast" : "")}{what}{rep} -> {HvStatusNames.Name(status)}");
        }
    }

    /// <summary>Checks common to every call: reserved bits, the call code, fast and rep forms, privileges.</summary>
    private static (HvStatus, int, string)? Validate(Partition partition, HypercallControl control)
    {
        if (control.ReservedBitsSet || control.Nested || control.VariableHeaderSize != 0)
        {
            return (HvStatus.InvalidHypercallInput, 0, " (reserved bits)");
        }

        HvPartitionPrivileges privileges = partition.Hv.Privileges;
        (bool known, bool rep, bool fastAllowed, bool slowAllowed, HvPartitionPrivileges needed) = control.CallCode switch
        {
            HvCallCode.PostMessage => (true, false, false, true, HvPartitionPrivileges.PostMessages),
            HvCallCode.SignalEvent => (true, false, true, true, HvPartitionPrivileges.SignalEvents),
            HvCallCode.CreateGpadl => (true, true, false, true, HvPartitionPrivileges.PostMessages),
            HvCallCode.DeleteGpadl => (true, false, true, false, HvPartitionPrivileges.PostMessages),
            HvCallCode.CreatePartition or HvCallCode.MapGpaPages => (true, false, false, true, HvPartitionPrivileges.CreatePartitions),
            _ => (false, false, false, false, HvPartitionPrivileges.None),
        };
        if (!known)
        {
            return (HvStatus.InvalidHypercallCode, 0, "");
        }

        if (rep != (control.RepCount > 0) || (control.Fast ? !fastAllowed : !slowAllowed)
            || (rep && control.RepStartIndex >= control.RepCount) || (!rep && control.RepStartIndex != 0))
        {
            return (HvStatus.InvalidHypercallInput, 0, " (wrong form)");
        }

        if ((privileges & needed) != needed)
        {
            return (HvStatus.AccessDenied, 0, "");
        }

        // Root-only calls are recognised but a child never holds CreatePartitions.
        return control.CallCode is HvCallCode.CreatePartition or HvCallCode.MapGpaPages
            ? (HvStatus.AccessDenied, 0, "")
            : null;
    }

    /// <summary>Reads a memory-based input block: 8-byte aligned, inside one page, inside RAM (TLFS 3.4).</summary>
    private static HvStatus ReadInput(Partition partition, ulong gpa, Span<byte> block)
    {
        if ((gpa & 7) != 0 || (gpa & (PageSize - 1)) + (ulong)block.Length > PageSize)
        {
            return HvStatus.InvalidAlignment;
        }

        return partition.AddressSpace is { } space && space.TryRead(gpa, block)
            ? HvStatus.Success
            : HvStatus.InvalidParameter;
    }

    /// <summary>HvPostMessage (TLFS 11.10.3): ConnectionId u32, Reserved u32, MessageType u32, PayloadSize u32, Payload[240].</summary>
    private (HvStatus, int, string) PostMessage(Partition partition, VirtualProcessor vp, HypercallControl control, ulong inputGpa)
    {
        _ = control;
        Span<byte> input = stackalloc byte[16 + HvMessageLayout.MaxPayload];
        HvStatus status = ReadInput(partition, inputGpa, input);
        if (status != HvStatus.Success)
        {
            return (status, 0, "");
        }

        uint connection = BinaryPrimitives.ReadUInt32LittleEndian(input);
        uint reserved = BinaryPrimitives.ReadUInt32LittleEndian(input[4..]);
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(input[8..]);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(input[12..]);
        string what = $" connection={connection} type={type} size={size}";
        if (reserved != 0 || size > HvMessageLayout.MaxPayload || type == 0 || (type & HvMessageLayout.HypervisorMessageTypeMask) != 0)
        {
            return (HvStatus.InvalidParameter, 0, what);
        }

        if (partition.Hv.FindPort(connection) is { Type: HvPortType.Message } port)
        {
            // A port inside the partition (TLFS 11.10.3): the kernel delivers it to the target vCPU's SynIC itself, into
            // the slot or queued behind a busy one; the sender's status says whether it could be queued.
            HvStatus delivered = partition.VirtualProcessors[port.TargetVp].Synic.PostMessage(port.TargetSint, type, input.Slice(16, (int)size), sender: 0);
            return (delivered, 0, $"{what} -> vp{port.TargetVp} sint={port.TargetSint}");
        }

        if (connection != HvPartitionState.VmBusMessageConnectionId)
        {
            return (HvStatus.InvalidConnectionId, 0, what);
        }

        byte[] payload = input.Slice(16, (int)size).ToArray();
        return (rootRequests.QueueForRoot(partition, vp, VmBusRequestKind.Message, connection, type, payload), 0, what);
    }

    /// <summary>HvSignalEvent (TLFS 11.10.4): ConnectionId u32, FlagNumber u16, Reserved u16; fast form in ECX and EBX.</summary>
    private (HvStatus, int, string) SignalEvent(Partition partition, VirtualProcessor vp, HypercallControl control, ulong input)
    {
        ulong block;
        if (control.Fast)
        {
            block = input;
        }
        else
        {
            Span<byte> bytes = stackalloc byte[8];
            HvStatus status = ReadInput(partition, input, bytes);
            if (status != HvStatus.Success)
            {
                return (status, 0, "");
            }

            block = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        }

        uint connection = (uint)block;
        ushort flag = (ushort)(block >> 32);
        ushort reserved = (ushort)(block >> 48);
        string what = $" connection=0x{connection:x} flag={flag}";
        if (reserved != 0 || flag != 0)
        {
            return (HvStatus.InvalidParameter, 0, what);
        }

        if (partition.Hv.FindPort(connection) is { Type: HvPortType.Event } port)
        {
            // TLFS 11.10.4: the flag is set (and the SINT asserted if it was clear) on the port's vCPU; a flag already
            // set is no error.
            HvStatus signalled = partition.VirtualProcessors[port.TargetVp].Synic.SignalEvent(port.TargetSint, port.BaseFlagNumber + flag);
            return (signalled, 0, $"{what} -> vp{port.TargetVp} sint={port.TargetSint} flag={port.BaseFlagNumber + flag}");
        }

        if (!partition.Hv.HasEventConnection(connection))
        {
            return (HvStatus.InvalidConnectionId, 0, what);
        }

        return (rootRequests.QueueForRoot(partition, vp, VmBusRequestKind.Signal, connection, 0, Array.Empty<byte>()), 0, what);
    }

    /// <summary>
    /// HvCallCreateGpadl (HybridVmm, rep): header { u32 GpadlId; u32 PageCount }, then one u64 guest page number
    /// per rep element. The first call (start index 0) creates the GPADL; a continuation appends from its start index.
    /// </summary>
    private static (HvStatus, int, string) CreateGpadl(Partition partition, HypercallControl control, ulong inputGpa)
    {
        int count = control.RepCount, start = control.RepStartIndex;
        if (count > GpadlTable.MaxPagesPerGpadl)
        {
            return (HvStatus.InvalidParameter, start, "");
        }

        Span<byte> header = stackalloc byte[8];
        if ((inputGpa & (PageSize - 1)) + 8 + (ulong)count * 8 > PageSize)
        {
            return (HvStatus.InvalidAlignment, start, "");
        }

        HvStatus status = ReadInput(partition, inputGpa, header);
        if (status != HvStatus.Success)
        {
            return (status, start, "");
        }

        uint id = BinaryPrimitives.ReadUInt32LittleEndian(header);
        uint pageCount = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        string what = $" gpadl={id} pages={pageCount}";
        GpadlTable table = partition.Hv.Gpadls;
        if (id == 0 || pageCount != count)
        {
            return (HvStatus.InvalidParameter, start, what);
        }

        Gpadl? gpadl = table.Find(id);
        if (start == 0)
        {
            if (gpadl is not null) return (HvStatus.ObjectInUse, start, what);
            if (table.Count >= GpadlTable.MaxGpadls) return (HvStatus.InsufficientMemory, start, what);
        }
        else if (gpadl is null || gpadl.Pages.Count != start)
        {
            return (HvStatus.InvalidParameter, start, what);
        }

        Span<byte> element = stackalloc byte[8];
        int done = start;
        for (int i = start; i < count; i++)
        {
            if (!partition.AddressSpace!.TryRead(inputGpa + 8 + (ulong)i * 8, element))
            {
                table.Remove(id);
                return (HvStatus.InvalidParameter, done, what);
            }

            ulong page = BinaryPrimitives.ReadUInt64LittleEndian(element);
            if (!partition.AddressSpace.IsRamPage(page))
            {
                // Nothing is granted by a failed call: drop a half-built GPADL.
                table.Remove(id);
                return (HvStatus.InvalidParameter, done, what);
            }

            gpadl ??= table.Begin(id, count);
            table.Append(gpadl, (uint)page);
            done++;
        }

        return (HvStatus.Success, done, what);
    }

    /// <summary>HvCallDeleteGpadl (HybridVmm, fast): ECX = GpadlId. The root loses access at once.</summary>
    private static (HvStatus, int, string) DeleteGpadl(Partition partition, ulong input)
    {
        uint id = (uint)input;
        return (partition.Hv.Gpadls.Remove(id) ? HvStatus.Success : HvStatus.InvalidParameter, 0, $" gpadl={id}");
    }
}
