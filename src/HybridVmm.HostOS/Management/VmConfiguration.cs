namespace HybridVmm.HostOS.Management;

/// <summary>Everything needed to create one guest VM.</summary>
public sealed record VmConfiguration
{
    public required string Name { get; init; }

    /// <summary>The Multiboot kernel image, already read from a file or the embedded samples.</summary>
    public required byte[] Image { get; init; }

    public uint MemoryBytes { get; init; } = 64u * 1024 * 1024;

    /// <summary>The Multiboot command line the guest sees (never null; empty by default).</summary>
    public string CommandLine { get; init; } = "";

    /// <summary>Emulated devices the guest's worker provides, by name (see <see cref="KnownDevices"/>).</summary>
    public IReadOnlyList<string> Devices { get; init; } = KnownDevices;

    public static readonly IReadOnlyList<string> KnownDevices = new[] { "com1", "debug-exit", "provisioning" };

    /// <summary>Fault injection: the named device's driver fails once, on this access (high-availability demos and tests).</summary>
    public (string Device, long OnAccess)? InjectDeviceFailure { get; init; }

    /// <summary>Stop the guest after this many instructions; zero means no limit.</summary>
    public long InstructionLimit { get; init; }
}
