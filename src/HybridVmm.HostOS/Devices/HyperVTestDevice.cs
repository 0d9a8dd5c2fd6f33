using HybridVmm.Hypervisor.Hv1;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// QEMU's <c>hyperv-testdev</c> (hw/misc/hyperv_testdev.c), which kvm-unit-tests' <c>hyperv_synic</c> and
/// <c>hyperv_connections</c> ask for (<c>-device hyperv-testdev</c>): one 32-bit control port at 0x3000. A write of
/// <c>(connection &lt;&lt; 24) | (command &lt;&lt; 16) | (vcpu &lt;&lt; 8) | sint</c> runs a command: 1 create a SINT route,
/// 2 destroy it, 3 raise the SINT on that vCPU, 4/5 create/destroy a message connection, 6/7 an event connection. Under
/// QEMU and KVM these are an irqfd into KVM's SynIC and connections QEMU serves (a message posted on it is posted back to
/// the vCPU and SINT that created it; a signal sets event flag number <c>connection</c> there). Here the root asks the
/// kernel for the same through <see cref="ISynicRouting"/>: a SINT raised on a vCPU, and ports inside the partition
/// (HvConnectPort, TLFS 11.10) that the kernel delivers to without the root, as Hyper-V does for a port in the
/// sender's own partition. A route needs no record here: raising a masked SINT does nothing, as the tests expect once
/// they mask a SINT before destroying its route. Not in the default device set: <c>hybridvmm run --device hyperv-testdev</c>.
/// It has no state of its own (the ports are the kernel's, saved with the partition), so it has no saved-state chunk.
/// </summary>
public sealed class HyperVTestDevice(ISynicRouting synic) : IChipsetDevice, IPortIoDevice
{
    public const string DeviceName = "hyperv-testdev";
    public const ushort ControlPort = 0x3000;

    private enum Command : byte
    {
        SintRouteCreate = 1,
        SintRouteDestroy,
        SintRouteSetSint,
        MessageConnectionCreate,
        MessageConnectionDestroy,
        EventConnectionCreate,
        EventConnectionDestroy,
    }

    public string Name => DeviceName;

    public IReadOnlyList<PortRange> Ports { get; } = new[] { new PortRange(ControlPort, ControlPort + 3) };

    public IPortIoDevice PortIo => this;

    /// <summary>Reads return zero, as QEMU's write-only control register does.</summary>
    public IoResult Read(ushort port, int size) => IoResult.Ok(0);

    public IoResult Write(ushort port, int size, uint value)
    {
        if (port != ControlPort || size != 4)
        {
            return IoResult.Ok(); // QEMU's region takes 32-bit accesses at its base only
        }

        int sint = (int)(value & 0xFF), vcpu = (int)((value >> 8) & 0xFF);
        uint connection = value >> 24;
        switch ((Command)((value >> 16) & 0xFF))
        {
            case Command.SintRouteSetSint:
                synic.AssertSint(vcpu, sint);
                break;
            case Command.MessageConnectionCreate:
                synic.ConnectPort(connection, HvPortType.Message, vcpu, sint, 0);
                break;
            case Command.EventConnectionCreate:
                // QEMU's device signals flag number = the connection ID on the creator's SINT.
                synic.ConnectPort(connection, HvPortType.Event, vcpu, sint, (int)connection);
                break;
            case Command.MessageConnectionDestroy or Command.EventConnectionDestroy:
                synic.DisconnectPort(connection);
                break;
            default:
                break; // route create and destroy: nothing to keep (see above); unknown commands are ignored
        }

        return IoResult.Ok();
    }
}

/// <summary>What a root device may ask of the kernel's SynIC for its VM (the hyperv-testdev's needs).</summary>
public interface ISynicRouting
{
    /// <summary>Raises <paramref name="sint"/> of vCPU <paramref name="vpIndex"/>; a masked SINT loses it.</summary>
    bool AssertSint(int vpIndex, int sint);

    /// <summary>Connects <paramref name="connectionId"/> to a port on vCPU <paramref name="vpIndex"/>'s <paramref name="sint"/>.</summary>
    bool ConnectPort(uint connectionId, HvPortType type, int vpIndex, int sint, int flag);

    void DisconnectPort(uint connectionId);
}
