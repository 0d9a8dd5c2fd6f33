namespace HybridVmm.HostOS.Devices;

/// <summary>
/// QEMU's isa-debug-exit at iobase 0xF4, iosize 4: any write ends the guest with the written value as its
/// exit value. (QEMU's own process then exits with (value &lt;&lt; 1) | 1; ours exits with the value.)
/// It has no state, so it has no saved-state chunk.
/// </summary>
public sealed class DebugExitDevice(IVmControl control) : IChipsetDevice, IPortIoDevice
{
    public const ushort BasePort = 0xF4;

    public string Name => "debug-exit";

    public IReadOnlyList<PortRange> Ports { get; } = new[] { new PortRange(BasePort, BasePort + 3) };

    public IPortIoDevice PortIo => this;

    /// <summary>Reads return zero, as QEMU's device does.</summary>
    public IoResult Read(ushort port, int size) => IoResult.Ok(0);

    public IoResult Write(ushort port, int size, uint value)
    {
        control.SignalGuestExit(value);
        return IoResult.Ok();
    }
}
