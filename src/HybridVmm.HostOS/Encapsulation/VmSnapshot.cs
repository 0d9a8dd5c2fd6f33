using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.SavedState;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.HostOS.VmBus;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>One device's saved state, by the device's name: the chunk its own codec wrote ("device.{name}").</summary>
public sealed record DeviceState(string Name, SavedStateChunk State)
{
    public static string Tag(string device) => $"device.{device}";
}

/// <summary>A guest RAM page that is not all zeros.</summary>
public readonly record struct SavedPage(uint PageNumber, byte[] Bytes);

/// <summary>
/// Everything that makes up a running VM, taken at an instruction boundary with no intercept in flight:
/// its configuration, vCPU state (with its interrupt state), RAM, device and worker state, the kernel's
/// synthetic state (MSRs, SynIC, grants, event connections), the root's VMBus channels and synthetic devices,
/// and counters. Encapsulation in the lecture's sense: the VM is this value, and <see cref="SnapshotFormat"/>
/// turns it into one file, a container of one chunk per component, each written by that component's codec.
/// Devices' state is already a chunk here, since only each device knows its state type. A synthblk's disk image is not in it: like Hyper-V's saved state beside its VHDX,
/// the snapshot refers to the disk by identity (<see cref="Disk"/>); the host that restores it names the file, which must be that disk, unchanged.
/// </summary>
public sealed record VmSnapshot
{
    public required string Name { get; init; }

    public required ulong MemoryBytes { get; init; }

    public required string CommandLine { get; init; }

    public required IReadOnlyList<string> Devices { get; init; }

    /// <summary>Synthetic (VMBus) devices, in relid order.</summary>
    public required IReadOnlyList<string> SyntheticDevices { get; init; }

    /// <summary>The disk behind synthblk, by identity (never a host path); the disk itself is not copied.</summary>
    public DiskReference? Disk { get; init; }

    public required long InstructionLimit { get; init; }

    /// <summary>The boot vCPU's registers, with its interrupt state (chunks "cpu.vp0", "interrupts.vp0").</summary>
    public required CpuState Cpu { get; init; }

    /// <summary>The other vCPUs' registers, vCPU 1 first ("cpu.vp{n}", "interrupts.vp{n}"); empty for a VM of one vCPU.</summary>
    public IReadOnlyList<CpuState> ApplicationProcessors { get; init; } = [];

    /// <summary>How many vCPUs the VM has.</summary>
    public int Processors => 1 + ApplicationProcessors.Count;

    /// <summary>vCPU <paramref name="index"/>'s registers.</summary>
    public CpuState CpuOf(int index) => index == 0 ? Cpu : ApplicationProcessors[index - 1];

    /// <summary>Virtual time the VM had used when it was saved.</summary>
    public required long VirtualTicks { get; init; }

    /// <summary>The time on the VM's own clock when it was saved, which its devices' deadlines refer to; null in older snapshots.</summary>
    public long? GuestClock { get; init; }

    public required long ChannelMessages { get; init; }

    public required IReadOnlyDictionary<string, long> Intercepts { get; init; }

    /// <summary>The state of each device that has one (a device without state has no entry).</summary>
    public required IReadOnlyList<DeviceState> DeviceStates { get; init; }

    /// <summary>The kernel's synthetic state: MSRs, grants, event connections, SynIC, HLT, requests queued for the root.</summary>
    public required EnlightenedState Enlightened { get; init; }

    /// <summary>The root's VMBus channels, one per synthetic device, with each device's host-side state.</summary>
    public required IReadOnlyList<ChannelState> Channels { get; init; }

    /// <summary>The console output serve had kept for the VM when it was saved (chunk "console"); null from other commands.</summary>
    public ConsoleBacklog? Console { get; init; }

    /// <summary>Non-zero RAM pages, wherever they are (<see cref="SavedMemory"/>); every other page is zero.</summary>
    public required SavedMemory Memory { get; init; }
}
