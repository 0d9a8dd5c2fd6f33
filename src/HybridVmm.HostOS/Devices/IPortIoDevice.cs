namespace HybridVmm.HostOS.Devices;

/// <summary>An inclusive range of I/O ports a device claims.</summary>
public readonly record struct PortRange(ushort First, ushort Last)
{
    public bool Contains(ushort port) => port >= First && port <= Last;
}

/// <summary>What a port write asks the VM worker to do next.</summary>
public enum PortWriteAction
{
    Continue,
    /// <summary>End the guest with <see cref="PortWriteOutcome.Value"/> as its exit value.</summary>
    ExitGuest,
    /// <summary>Pause the guest after the write retires (a template asking to be frozen).</summary>
    PauseGuest,
}

public readonly record struct PortWriteOutcome(PortWriteAction Action, uint Value)
{
    public static PortWriteOutcome Continue => default;

    public static PortWriteOutcome Exit(uint value) => new(PortWriteAction.ExitGuest, value);

    public static PortWriteOutcome Pause => new(PortWriteAction.PauseGuest, 0);
}

/// <summary>
/// One emulated device in a VM worker, in the shape OpenVMM gives its chipset devices: it declares the
/// ports it claims and handles reads and writes. It never sees the vCPU or the kernel. A device with state
/// for snapshots, migration and clones also implements <see cref="Hardware.SavedState.ISaveRestore{TState}"/>.
/// </summary>
public interface IPortIoDevice
{
    string Name { get; }

    IReadOnlyList<PortRange> Ports { get; }

    /// <summary>Reads <paramref name="size"/> bytes (1, 2 or 4) at <paramref name="port"/>.</summary>
    uint Read(ushort port, int size);

    PortWriteOutcome Write(ushort port, int size, uint value);
}
