using HybridVmm.Hardware.Cpu;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>One device's saved state, by the device's name.</summary>
public sealed record DeviceState(string Name, byte[] State);

/// <summary>A guest RAM page that is not all zeros.</summary>
public readonly record struct SavedPage(uint PageNumber, byte[] Bytes);

/// <summary>
/// Everything that makes up a running VM, taken at an instruction boundary with no intercept in flight:
/// its configuration, vCPU state, RAM, device and worker state, and counters. Encapsulation in the
/// lecture's sense: the VM is this value, and <see cref="SnapshotFormat"/> turns it into one file.
/// </summary>
public sealed record VmSnapshot
{
    public required string Name { get; init; }

    public required uint MemoryBytes { get; init; }

    public required string CommandLine { get; init; }

    public required IReadOnlyList<string> Devices { get; init; }

    public required long InstructionLimit { get; init; }

    public required CpuState Cpu { get; init; }

    /// <summary>Virtual time the VM had used when it was saved.</summary>
    public required long VirtualTicks { get; init; }

    public required long ChannelMessages { get; init; }

    public required IReadOnlyDictionary<string, long> Intercepts { get; init; }

    public required IReadOnlyList<DeviceState> DeviceStates { get; init; }

    /// <summary>Non-zero RAM pages; every other page is zero.</summary>
    public required IReadOnlyList<SavedPage> Pages { get; init; }
}
