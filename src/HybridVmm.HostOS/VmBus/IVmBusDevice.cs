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
    /// A restored VM's channel (already open if it was) is attached to the device, without a message to the guest.
    /// The device's host-side state (queued input, counters) is not this interface's business: a device that has
    /// some implements <see cref="Hardware.SavedState.ISaveRestore{TState}"/>, and the channel restores it next.
    /// The rings are guest RAM and the channel saves its own state, so a device without more state does nothing.
    /// </summary>
    void Reattached(VmBusChannel channel)
    {
    }
}
