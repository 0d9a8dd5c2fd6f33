namespace HybridVmm.HostOS.Devices;

/// <summary>
/// Port 0x80, where firmware and kernels write POST codes and where Linux writes to delay an I/O (outb_p). The
/// writes reach nothing; reads return all ones, as on QEMU's PC. The last code written is kept for the host
/// (a diagnostic, never seen by the guest), so the device has no saved state.
/// </summary>
public sealed class PostCodePort : IChipsetDevice, IPortIoDevice
{
    public const ushort Port = 0x80;

    public string Name => "post";

    public IReadOnlyList<PortRange> Ports { get; } = new[] { new PortRange(Port, Port) };

    public IPortIoDevice PortIo => this;

    /// <summary>The last value the guest wrote (the low byte is the POST code).</summary>
    public uint LastCode { get; private set; }

    public IoResult Read(ushort port, int size) => IoResult.Ok(0xFFFF_FFFF);

    public IoResult Write(ushort port, int size, uint value)
    {
        LastCode = value;
        return IoResult.Ok();
    }
}
