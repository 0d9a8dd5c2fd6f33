namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// A synthetic device: a service provider in the root partition behind one VMBus channel (a VSP, in Hyper-V
/// terms). It never sees the guest's vCPU or memory: it reads and writes the channel's rings, whose pages the
/// guest granted, and the server signals the guest for it.
/// </summary>
public interface IVmBusDevice
{
    /// <summary>Short name for traces, e.g. "synthcon".</summary>
    string Name { get; }

    /// <summary>The interface (class) GUID the offer carries; a guest driver matches on it.</summary>
    Guid InterfaceId { get; }

    /// <summary>The guest opened the channel; a device may queue packets for it (e.g. pending console input).</summary>
    void Opened(VmBusChannel channel);

    /// <summary>The guest signalled: drain the guest-to-host ring and answer on the host-to-guest ring.</summary>
    void Serve(VmBusChannel channel);

    /// <summary>
    /// The provider's host-side state for a snapshot (queued input, counters), as opaque bytes. The rings are
    /// guest RAM and the channel's own state is saved by the channel, so a device without more state saves nothing.
    /// </summary>
    byte[] SaveState() => Array.Empty<byte>();

    /// <summary>
    /// Takes back what <see cref="SaveState"/> returned, on a restored channel (already open if it was), without
    /// sending anything to the guest. False when the bytes are not this device's state.
    /// </summary>
    bool RestoreState(VmBusChannel channel, ReadOnlySpan<byte> state) => state.IsEmpty;
}
