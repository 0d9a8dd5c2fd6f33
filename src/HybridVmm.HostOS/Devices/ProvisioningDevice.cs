using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The provisioning port (0x5F0, 4 bytes), a HybridVmm device for rapid provisioning. A guest writes to it
/// to ask to be frozen as a template at that point; reading it returns the VM's identity, which VM
/// management sets per clone (0 for an ordinary VM) so that clones of one template can tell themselves apart.
/// Only a VM that VM management is ready to freeze (<paramref name="captureTemplate"/>: the template of rapid
/// provisioning and its clones) is paused by a write; for any other VM a write is ignored, as a device whose
/// function is not enabled ignores it, so a guest that writes the port outside <c>clone</c> runs on instead of
/// waiting forever for a freeze nobody takes.
/// </summary>
public sealed class ProvisioningDevice(IVmControl control, bool captureTemplate = true) : IChipsetDevice, IPortIoDevice, ISaveRestore<ProvisioningState>
{
    public const ushort BasePort = 0x5F0;

    public string Name => "provisioning";

    public IReadOnlyList<PortRange> Ports { get; } = new[] { new PortRange(BasePort, BasePort + 3) };

    public IPortIoDevice PortIo => this;

    public uint Identity { get; set; }

    /// <summary>Whether the guest has asked to be frozen as a template.</summary>
    public bool TemplateReady { get; private set; }

    public IoResult Read(ushort port, int size) => IoResult.Ok(Identity);

    public IoResult Write(ushort port, int size, uint value)
    {
        if (!captureTemplate)
        {
            return IoResult.Ok();
        }

        TemplateReady = true;
        control.RequestPause();
        return IoResult.Ok();
    }

    public StateCodec<ProvisioningState> StateCodec => ProvisioningStateCodec.Instance;

    public ProvisioningState Save() => new(Identity);

    public bool Restore(ProvisioningState state)
    {
        Identity = state.Identity;
        return true;
    }
}
