namespace HybridVmm.HostOS.Devices;

/// <summary>
/// Fault injection for the high-availability scenario: wraps a device and fails, once, on its Nth access,
/// as a driver with a transient bug would. Every other access goes to the real device.
/// </summary>
public sealed class FlakyDevice(IPortIoDevice inner, long failOnAccess) : IPortIoDevice
{
    private long _accesses;

    public string Name => inner.Name;

    public IReadOnlyList<PortRange> Ports => inner.Ports;

    public uint Read(ushort port, int size)
    {
        Count();
        return inner.Read(port, size);
    }

    public PortWriteOutcome Write(ushort port, int size, uint value)
    {
        Count();
        return inner.Write(port, size, value);
    }

    public byte[] SaveState() => inner.SaveState();

    public bool RestoreState(ReadOnlySpan<byte> state) => inner.RestoreState(state);

    private void Count()
    {
        if (++_accesses == failOnAccess)
        {
            throw new DeviceFailureException($"{inner.Name} driver failed on access {failOnAccess} (injected fault)");
        }
    }
}
