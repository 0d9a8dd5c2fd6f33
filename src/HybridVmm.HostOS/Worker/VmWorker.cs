using HybridVmm.HostOS.Devices;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.HostOS.Worker;

/// <summary>
/// The root partition's worker for one guest (Hyper-V's vmwp.exe in spirit): it owns that guest's emulated
/// devices and serves the guest's intercepts from its own inbox, one at a time. A port nobody claims reads
/// as all ones and swallows writes; an access to a guest-physical address with nothing behind it faults the
/// guest. Either way only this guest is affected.
/// </summary>
public sealed class VmWorker
{
    private readonly RootPartitionApi _root;
    private readonly List<IPortIoDevice> _devices = new();
    private readonly TraceRecorder _trace;

    public VmWorker(RootPartitionApi root, Partition partition)
    {
        _root = root;
        _trace = root.Trace;
        Partition = partition;
        Inbox = new MessagePort<InterceptMessage>($"worker.{partition.Name}", capacity: 16);
    }

    public Partition Partition { get; }

    public MessagePort<InterceptMessage> Inbox { get; }

    /// <summary>Virtual time of the intercept being served; devices stamp their output with it.</summary>
    public long Now { get; private set; }

    public IReadOnlyList<IPortIoDevice> Devices => _devices;

    public void Attach(IPortIoDevice device)
    {
        foreach (PortRange range in device.Ports)
        {
            foreach (IPortIoDevice other in _devices)
            {
                foreach (PortRange taken in other.Ports)
                {
                    if (range.First <= taken.Last && taken.First <= range.Last)
                    {
                        throw new InvalidOperationException($"{device.Name} ports 0x{range.First:x}-0x{range.Last:x} overlap {other.Name}");
                    }
                }
            }
        }

        _devices.Add(device);
    }

    /// <summary>Serves intercepts until the inbox is completed or the token fires.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await foreach (InterceptMessage message in Inbox.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            InterceptReply reply = Handle(message);
            await _root.CompleteInterceptAsync(reply, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Serves one intercept and decides the reply.</summary>
    public InterceptReply Handle(in InterceptMessage message)
    {
        Now = message.VirtualTime;
        try
        {
            return message.Kind switch
            {
                InterceptKind.IoPortRead => PortRead(message),
                InterceptKind.IoPortWrite => PortWrite(message),
                _ => UnmappedGpa(message),
            };
        }
        catch (DeviceFailureException e)
        {
            // A failing device driver takes down this guest's worker, not the root or the other guests.
            Trace(message, $"device driver failed: {e.Message}; worker stops");
            return new InterceptReply(message.PartitionId, message.VpIndex, InterceptAction.WorkerFailed, 0, $"the VM worker's device driver failed: {e.Message}");
        }
    }

    private InterceptReply PortRead(in InterceptMessage m)
    {
        uint mask = SizeMask(m.Size);
        IPortIoDevice? device = Find(m.Port);
        uint value = device is null ? mask : device.Read(m.Port, m.Size) & mask;
        Trace(m, device is null
            ? $"unclaimed read port=0x{m.Port:x4} size={m.Size} -> 0x{value:x} (all ones)"
            : $"{device.Name} read port=0x{m.Port:x4} size={m.Size} -> 0x{value:x}");
        return new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, value);
    }

    private InterceptReply PortWrite(in InterceptMessage m)
    {
        IPortIoDevice? device = Find(m.Port);
        uint value = m.Value & SizeMask(m.Size);
        if (device is null)
        {
            Trace(m, $"unclaimed write port=0x{m.Port:x4} size={m.Size} value=0x{value:x} (dropped)");
            return new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, 0);
        }

        PortWriteOutcome outcome = device.Write(m.Port, m.Size, value);
        Trace(m, $"{device.Name} write port=0x{m.Port:x4} size={m.Size} value=0x{value:x}{Printable(device, value)}");
        InterceptAction action = outcome.Action switch
        {
            PortWriteAction.ExitGuest => InterceptAction.ExitGuest,
            PortWriteAction.PauseGuest => InterceptAction.Pause,
            _ => InterceptAction.Resume,
        };
        return new InterceptReply(m.PartitionId, m.VpIndex, action, outcome.Value);
    }

    private InterceptReply UnmappedGpa(in InterceptMessage m)
    {
        string what = $"{(m.IsWrite ? "write to" : "read from")} guest-physical address 0x{m.GuestPhysicalAddress:x8}, outside the guest's {Partition.AddressSpace?.SizeBytes / (1024 * 1024)} MiB of RAM and claimed by no device";
        Trace(m, $"no device at gpa=0x{m.GuestPhysicalAddress:x8}: fault");
        return new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Fault, 0, what);
    }

    private IPortIoDevice? Find(ushort port)
    {
        foreach (IPortIoDevice device in _devices)
        {
            foreach (PortRange range in device.Ports)
            {
                if (range.Contains(port))
                {
                    return device;
                }
            }
        }

        return null;
    }

    private void Trace(in InterceptMessage m, string details)
    {
        if (_trace.Enabled)
        {
            _trace.Record(m.VirtualTime, m.PartitionId, m.VpIndex, TraceKind.Device, details);
        }
    }

    private static string Printable(IPortIoDevice device, uint value) =>
        device is Uart16550 && value is >= 0x20 and < 0x7F ? $" '{(char)value}'" : "";

    private static uint SizeMask(byte size) => size switch
    {
        1 => 0xFFu,
        2 => 0xFFFFu,
        _ => 0xFFFF_FFFFu,
    };
}
