using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// Fault injection for the high-availability scenario: wraps a device and fails, once, on its Nth access,
/// as a driver with a transient bug would. Every other access goes to the real device, and so does its saved
/// state: the wrapper has none of its own.
/// </summary>
public sealed class FlakyDevice(IPortIoDevice inner, long failOnAccess) : IPortIoDevice, IPersistentState
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

    /// <summary>The wrapped device's chunk; null when it has no state.</summary>
    public SavedStateChunk? SaveChunk(string tag) => (inner as IPersistentState)?.SaveChunk(tag);

    public string? VersionRefusal(SavedStateChunk chunk) => (inner as IPersistentState)?.VersionRefusal(chunk);

    /// <summary>A wrapped device without state takes only an empty chunk.</summary>
    public bool RestoreChunk(SavedStateChunk chunk) => inner is IPersistentState persistent ? persistent.RestoreChunk(chunk) : chunk.Payload.Length == 0;

    private void Count()
    {
        if (++_accesses == failOnAccess)
        {
            throw new DeviceFailureException($"{inner.Name} driver failed on access {failOnAccess} (injected fault)");
        }
    }
}
