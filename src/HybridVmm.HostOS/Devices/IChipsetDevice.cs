namespace HybridVmm.HostOS.Devices;

/// <summary>
/// One emulated device of a VM, in the spirit of OpenVMM's <c>ChipsetDevice</c>: it has a name and opts in to
/// the kinds of access it serves by returning its port-I/O or MMIO side (null: not supported; PCI configuration
/// space is the next opt-in). It never sees the vCPU or the kernel: what it may do to the VM it gets at
/// construction as <see cref="DeviceServices"/>. A device with state also implements the separate saved-state
/// contract.
/// </summary>
public interface IChipsetDevice
{
    /// <summary>Short name for traces and saved state, e.g. "com1".</summary>
    string Name { get; }

    /// <summary>The device's port-I/O side, or null when it claims no ports.</summary>
    IPortIoDevice? PortIo => null;

    /// <summary>The device's memory-mapped side, or null when it claims no guest-physical range.</summary>
    IMmioDevice? Mmio => null;
}

/// <summary>An inclusive range of I/O ports a device claims.</summary>
public readonly record struct PortRange(ushort First, ushort Last)
{
    public bool Contains(ushort port) => port >= First && port <= Last;

    public override string ToString() => $"ports 0x{First:x}-0x{Last:x}";
}

/// <summary>An inclusive range of guest-physical addresses a device claims; no RAM may back it.</summary>
public readonly record struct MmioRange(uint First, uint Last)
{
    public bool Contains(uint gpa) => gpa >= First && gpa <= Last;

    public override string ToString() => $"gpa 0x{First:x8}-0x{Last:x8}";
}

/// <summary>Port I/O (IN, OUT, INS, OUTS) to the ports a device claims.</summary>
public interface IPortIoDevice
{
    IReadOnlyList<PortRange> Ports { get; }

    /// <summary>Reads <paramref name="size"/> bytes (1, 2 or 4) at <paramref name="port"/>.</summary>
    IoResult Read(ushort port, int size);

    IoResult Write(ushort port, int size, uint value);
}

/// <summary>
/// Memory-mapped I/O to the guest-physical ranges a device claims. An access never crosses a page: one that
/// does reaches the device as one access per page part, each with its own address and size.
/// </summary>
public interface IMmioDevice
{
    IReadOnlyList<MmioRange> Regions { get; }

    /// <summary>Reads <paramref name="size"/> bytes (1, 2 or 4; little-endian) at <paramref name="gpa"/>.</summary>
    IoResult Read(uint gpa, int size);

    IoResult Write(uint gpa, int size, uint value);
}
