namespace HybridVmm.HostOS.Devices;

/// <summary>A device's state for snapshots, migration and clones, kept apart from its I/O contract.</summary>
public interface IDeviceStateBytes
{
    byte[] SaveState();

    /// <summary>Restores state from <see cref="SaveState"/>; false when the bytes are not a valid state.</summary>
    bool RestoreState(ReadOnlySpan<byte> state);
}
