using HybridVmm.HostOS.Devices;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.HostOS.Worker;

/// <summary>
/// The root partition's worker for one guest (Hyper-V's vmwp.exe in spirit): it owns that guest's emulated
/// devices and serves the guest's intercepts from its own inbox, one at a time, through the device map
/// (<see cref="DeviceMap"/>). A port nobody claims reads as all ones and swallows writes; an access to a
/// guest-physical address with nothing behind it faults the guest. Either way only this guest is affected.
/// The worker also gives its devices their services: the VM's virtual clock, run-state requests, interrupt
/// lines and virtual-time timers.
/// </summary>
public sealed class VmWorker : IDeviceClock, IVmControl
{
    private readonly RootPartitionApi _root;
    private readonly TraceRecorder _trace;
    private readonly DeviceMap _map = new();
    private readonly DeviceTimers _timers;
    private InterceptReply? _request;
    private bool _serving;
    // A deferred device access of the intercept being served: what to trace, and the read's size mask.
    private DeferredIo? _deferred;
    private string? _deferredWhat;
    private uint _deferredMask;
    // The PC's interrupt controller the platform's lines feed, once connected; without one, lines go nowhere.
    private DualPic8259? _pic;
    private IoApic? _ioapic;

    public VmWorker(RootPartitionApi root, PartitionHandle partition)
    {
        _root = root;
        _trace = root.Trace;
        Partition = partition;
        _vmName = root.Name(partition);
        Inbox = new MessagePort<InterceptMessage>($"worker.{_vmName}", capacity: 16);
        _timers = new DeviceTimers(deadline => _root.SetDeviceTimer(Partition, deadline));
        Services = new DeviceServices(this, this, line => new InterruptLine(this, line), _timers.Create,
            (address, data) => _root.SignalMsi(Partition, address, data), new KernelSynicRouting(root, partition));
    }

    /// <summary>The kernel's SynIC for this worker's partition, by handle.</summary>
    private sealed class KernelSynicRouting(RootPartitionApi root, PartitionHandle partition) : ISynicRouting
    {
        public bool AssertSint(int vpIndex, int sint) => root.AssertSynicInterrupt(partition, vpIndex, sint);

        public bool ConnectPort(uint connectionId, Hypervisor.Hv1.HvPortType type, int vpIndex, int sint, int flag) =>
            root.ConnectPort(partition, connectionId, type, vpIndex, sint, flag);

        public void DisconnectPort(uint connectionId) => root.DisconnectPort(partition, connectionId);
    }

    public PartitionHandle Partition { get; }

    public MessagePort<InterceptMessage> Inbox { get; }

    /// <summary>The services this worker gives the devices it builds.</summary>
    public DeviceServices Services { get; }

    /// <summary>
    /// The guest's time at the intercept being served (<see cref="InterceptMessage.GuestTime"/>): devices run their
    /// timers on it and stamp their output with it, so a restored VM's devices continue on the clock they were saved with.
    /// </summary>
    public long Now { get; private set; }

    public IReadOnlyList<IChipsetDevice> Devices => _map.Devices;

    /// <summary>A restored VM: its devices take their saved state at the guest time it was saved at, before any intercept.</summary>
    public void ContinueClock(long guestTime) => Now = guestTime;

    /// <summary>Adds a device to the machine; a claim that overlaps another device's, or the guest's RAM, is refused.</summary>
    public void Attach(IChipsetDevice device)
    {
        if (device.Mmio is { } mmio)
        {
            foreach (MmioRange range in mmio.Regions)
            {
                if (_root.IsRam(Partition, range.First, range.Last))
                {
                    throw new InvalidOperationException($"{device.Name} {range} overlaps the guest's RAM");
                }
            }
        }

        _map.Add(device);
    }

    /// <summary>Serves intercepts until the inbox is completed or the token fires.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await foreach (InterceptMessage message in Inbox.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            await _busy.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                InterceptReply reply = await HandleAsync(message).ConfigureAwait(false);
                await _root.CompleteInterceptAsync(reply, cancellationToken).ConfigureAwait(false);
                RecordRoundTrip(message.VpIndex);
            }
            finally
            {
                _busy.Release();
            }
        }
    }

    // Held while an intercept is served, by the inbox loop or by a direct switch: one access at a time, in order.
    private readonly SemaphoreSlim _busy = new(1, 1);

    /// <summary>Takes the worker for a direct switch if no intercept is being served; then <see cref="ServeTaken"/> must follow.</summary>
    internal bool TryTake() => _busy.Wait(0);

    /// <summary>
    /// Serves an intercept the kernel handed over by a direct switch (<see cref="TryTake"/> succeeded), on the
    /// caller's thread: the reply at once, or, if a device deferred the access, later on the kernel's reply port.
    /// </summary>
    internal DirectSwitch ServeTaken(in InterceptMessage message, out InterceptReply reply, CancellationToken cancellationToken)
    {
        ValueTask<InterceptReply> serving = HandleAsync(message);
        if (!serving.IsCompletedSuccessfully)
        {
            reply = default;
            _ = FinishDeferredAsync(serving, message.VpIndex, cancellationToken);
            return DirectSwitch.Pending;
        }

        reply = serving.Result;
        _busy.Release();
        RecordRoundTrip(message.VpIndex);
        return DirectSwitch.Served;
    }

    private async Task FinishDeferredAsync(ValueTask<InterceptReply> serving, int vpIndex, CancellationToken cancellationToken)
    {
        try
        {
            InterceptReply reply = await serving.ConfigureAwait(false);
            await _root.CompleteInterceptAsync(reply, cancellationToken).ConfigureAwait(false);
            RecordRoundTrip(vpIndex);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _busy.Release();
        }
    }

    private void RecordRoundTrip(int vpIndex)
    {
        if ((uint)vpIndex < (uint)_routedAt.Length && Interlocked.Exchange(ref _routedAt[vpIndex], 0) is var routed and not 0)
        {
            Telemetry.HybridVmmMetrics.RecordRoundTrip(routed, _vmName);
        }
    }

    // When the root routed each vCPU's intercept here (Stopwatch ticks; 0 = not measured): the start of a round trip
    // for the HybridVmm meter, stamped only while something listens to it.
    private readonly long[] _routedAt = new long[64];
    private readonly string _vmName;

    /// <summary>The root routed an intercept of vCPU <paramref name="vpIndex"/> here at <paramref name="timestamp"/>.</summary>
    internal void Routed(int vpIndex, long timestamp)
    {
        if ((uint)vpIndex < (uint)_routedAt.Length)
        {
            Volatile.Write(ref _routedAt[vpIndex], timestamp);
        }
    }

    /// <summary>Serves one intercept synchronously (the Type 1 kernel's in-kernel path), waiting for a deferred access.</summary>
    public InterceptReply Handle(in InterceptMessage message) => HandleAsync(message).AsTask().GetAwaiter().GetResult();

    /// <summary>Serves one intercept and decides the reply.</summary>
    public async ValueTask<InterceptReply> HandleAsync(InterceptMessage message)
    {
        Now = message.GuestTime;
        _serving = true;
        _request = null;
        try
        {
            InterceptReply reply = message.Kind switch
            {
                InterceptKind.IoPortRead => PortRead(message),
                InterceptKind.IoPortWrite => PortWrite(message),
                InterceptKind.DeviceTimer => FireTimers(message),
                InterceptKind.InterruptWindow => InterruptWindow(message),
                InterceptKind.ApicEoi => ApicEoi(message),
                _ => Mmio(message),
            };
            if (_deferred is { } deferred)
            {
                _deferred = null;
                IoResult completed = await deferred.Completion.ConfigureAwait(false);
                reply = completed.Status == IoStatus.Deferred
                    ? Reply(message, InterceptAction.Fault, 0, $"{_deferredWhat}: a deferred access completed with another deferral")
                    : Finish(message, completed, null, _deferredMask, $"{_deferredWhat} (deferred)");
            }

            // A run-state request made during the access replaces a plain resume; the access still completes
            // (a read keeps its value), except that a guest exit carries its own value.
            if (reply.Action == InterceptAction.Resume && _request is { } request)
            {
                reply = request with { VpIndex = message.VpIndex, Value = request.Action == InterceptAction.ExitGuest ? request.Value : reply.Value };
            }

            return reply;
        }
        catch (DeviceFailureException e)
        {
            // A failing device driver takes down this guest's worker, not the root or the other guests.
            Trace(message, $"device driver failed: {e.Message}; worker stops");
            return Reply(message, InterceptAction.WorkerFailed, 0, $"the VM worker's device driver failed: {e.Message}");
        }
        finally
        {
            _serving = false;
            _deferred = null;
        }
    }

    private InterceptReply PortRead(in InterceptMessage m)
    {
        uint mask = SizeMask(m.Size);
        if (_map.FindPort(m.Port) is not { } device)
        {
            if (_trace.Enabled)
            {
                Trace(m, $"unclaimed read port=0x{m.Port:x4} size={m.Size} -> 0x{mask:x} (all ones)");
            }
            return Reply(m, InterceptAction.Resume, mask);
        }

        return Finish(m, device.PortIo!.Read(m.Port, m.Size), device, mask);
    }

    private InterceptReply PortWrite(in InterceptMessage m)
    {
        uint value = m.Value & SizeMask(m.Size);
        if (_map.FindPort(m.Port) is not { } device)
        {
            if (_trace.Enabled)
            {
                Trace(m, $"unclaimed write port=0x{m.Port:x4} size={m.Size} value=0x{value:x} (dropped)");
            }
            return Reply(m, InterceptAction.Resume, 0);
        }

        return Finish(m, device.PortIo!.Write(m.Port, m.Size, value), device);
    }

    private InterceptReply Mmio(in InterceptMessage m)
    {
        ulong gpa = m.GuestPhysicalAddress;
        // Every device lies below 4 GiB: an address above it (PAE reaches 36 bits) is RAM or nothing.
        if (gpa > uint.MaxValue || _map.FindMmio((uint)gpa, m.Size) is not { } device)
        {
            string what = $"{(m.IsWrite ? "write to" : "read from")} guest-physical address 0x{gpa:x8}, outside the guest's {_root.MemorySizeBytes(Partition) / (1024 * 1024)} MiB of RAM and claimed by no device";
            Trace(m, $"no device at gpa=0x{gpa:x8}: fault");
            return Reply(m, InterceptAction.Fault, 0, what);
        }

        uint mask = SizeMask(m.Size);
        if (m.IsWrite)
        {
            return Finish(m, device.Mmio!.Write((uint)gpa, m.Size, m.Value & mask), device);
        }

        return Finish(m, device.Mmio!.Read((uint)gpa, m.Size), device, mask);
    }

    private InterceptReply FireTimers(in InterceptMessage m)
    {
        int fired = _timers.FireDue(m.GuestTime);
        Trace(m, $"device timer at {m.VirtualTime}: {fired} fired");
        return Reply(m, InterceptAction.Resume, 0);
    }

    /// <summary>
    /// Connects the PIC: platform interrupt lines become its inputs, and while its INTR output is high the worker asks
    /// the kernel for an interrupt window on the boot vCPU (Hyper-V's HvRegisterDeliverabilityNotifications for ExtINT).
    /// </summary>
    public void ConnectInterruptController(DualPic8259 pic)
    {
        _pic = pic;
        pic.ConnectIntr(high => _root.SetInterruptWindow(Partition, high));
    }

    /// <summary>
    /// Connects the I/O APIC: platform interrupt lines reach its inputs as well as the PIC's, as on a PC, and the
    /// kernel's EOI intercepts for level-triggered vectors reach it.
    /// </summary>
    public void ConnectIoApic(IoApic ioapic) => _ioapic = ioapic;

    /// <summary>The guest ended a level-triggered interrupt: the I/O APIC's remote IRR for that vector clears.</summary>
    private InterceptReply ApicEoi(in InterceptMessage m)
    {
        Trace(m, $"ioapic eoi vector=0x{m.Value:x2}");
        _ioapic?.EndOfInterrupt((byte)m.Value);
        return Reply(m, InterceptAction.Resume, 0);
    }

    /// <summary>
    /// The boot vCPU can take an external interrupt now: the PIC's INTA cycles choose the vector (or a spurious IRQ 7
    /// if the request went away), and the reply injects it before the vCPU's next instruction.
    /// </summary>
    private InterceptReply InterruptWindow(in InterceptMessage m)
    {
        if (_pic is null)
        {
            Trace(m, "interrupt window: no interrupt controller");
            return Reply(m, InterceptAction.Resume, 0);
        }

        DualPic8259.Acknowledgement ack = _pic.Acknowledge();
        Trace(m, ack.Spurious
            ? $"pic acknowledge: spurious irq {ack.Irq} vector=0x{ack.Vector:x2}"
            : $"pic acknowledge irq {ack.Irq} vector=0x{ack.Vector:x2}");
        return new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, 0, null, ack.Vector);
    }

    /// <summary>
    /// Turns a device's answer into the reply: a read's value (masked to its size), a fault, or a deferral to wait for.
    /// The access is described (<see cref="Describe"/>) only for the trace, a deferral or a fault: a plain access
    /// with tracing off formats nothing.
    /// </summary>
    private InterceptReply Finish(in InterceptMessage m, IoResult result, IChipsetDevice? device, uint readMask = 0, string? described = null)
    {
        switch (result.Status)
        {
            case IoStatus.Ok:
                uint value = result.Value & readMask;
                if (_trace.Enabled)
                {
                    string what = described ?? Describe(m, device!);
                    Trace(m, readMask == 0 ? what : $"{what} -> 0x{value:x}");
                }

                return Reply(m, InterceptAction.Resume, value);
            case IoStatus.Deferred when _deferred is null && result.Deferred is not null:
                _deferred = result.Deferred;
                _deferredWhat = described ?? Describe(m, device!);
                _deferredMask = readMask;
                return Reply(m, InterceptAction.Resume, 0);
            default:
                string access = described ?? Describe(m, device!);
                string error = result.Error ?? "the device refused the access";
                Trace(m, $"{access}: error: {error}");
                return Reply(m, InterceptAction.Fault, 0, $"{access}: {error}");
        }
    }

    /// <summary>A device access as the trace and fault messages name it.</summary>
    private static string Describe(in InterceptMessage m, IChipsetDevice device)
    {
        uint value = m.Value & SizeMask(m.Size);
        return m.Kind switch
        {
            InterceptKind.IoPortRead => $"{device.Name} read port=0x{m.Port:x4} size={m.Size}",
            InterceptKind.IoPortWrite => $"{device.Name} write port=0x{m.Port:x4} size={m.Size} value=0x{value:x}{Printable(device, value)}",
            _ when m.IsWrite => $"{device.Name} write gpa=0x{m.GuestPhysicalAddress:x8} size={m.Size} value=0x{value:x}",
            _ => $"{device.Name} read gpa=0x{m.GuestPhysicalAddress:x8} size={m.Size}",
        };
    }

    private static InterceptReply Reply(in InterceptMessage m, InterceptAction action, uint value, string? reason = null) =>
        new(m.PartitionId, m.VpIndex, action, value, reason);

    void IVmControl.SignalGuestExit(uint value) => Request(InterceptAction.ExitGuest, value);

    void IVmControl.RequestPause() => Request(InterceptAction.Pause, 0);

    void IVmControl.RequestPowerOff() => Request(InterceptAction.PowerOff, 0);

    void IVmControl.RequestReset() => Request(InterceptAction.Reset, 0);

    /// <summary>During an access, the request becomes the reply (the instruction retires first); otherwise it goes to the kernel at once.</summary>
    private void Request(InterceptAction action, uint value)
    {
        if (_serving)
        {
            _request ??= new InterceptReply(Partition.Id, 0, action, value);
            return;
        }

        _root.RequestStop(Partition, action, value);
    }

    private void Trace(in InterceptMessage m, string details)
    {
        if (_trace.Enabled)
        {
            _trace.Record(m.VirtualTime, m.PartitionId, m.VpIndex, TraceKind.Device, details);
        }
    }

    private static string Printable(IChipsetDevice device, uint value) =>
        device is Uart16550 && value is >= 0x20 and < 0x7F ? $" '{(char)value}'" : "";

    private static uint SizeMask(byte size) => size switch
    {
        1 => 0xFFu,
        2 => 0xFFFFu,
        _ => 0xFFFF_FFFFu,
    };

    /// <summary>
    /// A platform interrupt line: IRQ n is input n of the PIC pair (0-7 the master's, 8-15 the slave's), whose level
    /// follows <see cref="Raise"/> and <see cref="Lower"/>. A line with no PIC connected reaches nothing, as on a PC
    /// without one.
    /// </summary>
    private sealed class InterruptLine(VmWorker worker, int line) : IInterruptLine
    {
        public bool IsRaised { get; private set; }

        public void Raise()
        {
            if (!IsRaised)
            {
                IsRaised = true;
                worker._pic?.SetIrq(line, true);
                worker._ioapic?.SetIrq(line, true);
            }
        }

        public void Lower()
        {
            if (IsRaised)
            {
                IsRaised = false;
                worker._pic?.SetIrq(line, false);
                worker._ioapic?.SetIrq(line, false);
            }
        }
    }
}
