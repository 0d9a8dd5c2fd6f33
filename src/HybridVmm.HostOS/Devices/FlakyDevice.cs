using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// Fault injection for the high-availability scenario: wraps a device and fails, once, on its Nth access,
/// as a driver with a transient bug would. Every other access goes to the real device, and so does its saved
/// state: the wrapper has none of its own.
/// </summary>
public sealed class FlakyDevice(IChipsetDevice inner, long failOnAccess) : IChipsetDevice, IPortIoDevice, IMmioDevice, IPersistentState
{
    private long _accesses;

    public string Name => inner.Name;

    /// <summary>The wrapped device, whose state the VM's saved state holds.</summary>
    public IChipsetDevice Inner => inner;

    public IPortIoDevice? PortIo => inner.PortIo is null ? null : this;

    public IMmioDevice? Mmio => inner.Mmio is null ? null : this;

    public IReadOnlyList<PortRange> Ports => inner.PortIo!.Ports;

    public IReadOnlyList<MmioRange> Regions => inner.Mmio!.Regions;

    IoResult IPortIoDevice.Read(ushort port, int size)
    {
        Count();
        return inner.PortIo!.Read(port, size);
    }

    IoResult IPortIoDevice.Write(ushort port, int size, uint value)
    {
        Count();
        return inner.PortIo!.Write(port, size, value);
    }

    IoResult IMmioDevice.Read(uint gpa, int size)
    {
        Count();
        return inner.Mmio!.Read(gpa, size);
    }

    IoResult IMmioDevice.Write(uint gpa, int size, uint value)
    {
        Count();
        return inner.Mmio!.Write(gpa, size, value);
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
