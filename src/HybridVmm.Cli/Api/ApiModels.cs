namespace HybridVmm.Cli.Api;

// The management API's JSON documents (camelCase on the wire). docs/serve.md describes each field.

/// <summary>POST /api/vms: a VM from an image (as a serve configuration's Vms[] entry) or from a snapshot file.</summary>
public sealed record CreateVmRequest
{
    public string? Name { get; init; }

    /// <summary>A path to a Multiboot ELF or bzImage on the serve host, or embedded:NAME.</summary>
    public string? Image { get; init; }

    /// <summary>A snapshot file written by save, run --save-to or restore --save-to; exclusive with Image.</summary>
    public string? Snapshot { get; init; }

    public string? Memory { get; init; }

    public string? CommandLine { get; init; }

    public List<string>? Devices { get; init; }

    public List<string>? SyntheticDevices { get; init; }

    public string? DiskImage { get; init; }

    public long? MaxInstructions { get; init; }

    /// <summary>Virtual processors, 1 to 64 (default 1): the application processors wait for INIT/SIPI, as on a PC.</summary>
    public int? Cpus { get; init; }

    /// <summary>Start the VM at once (default false: it is created and waits for start).</summary>
    public bool Start { get; init; }
}

/// <summary>POST /api/vms/{name}/save.</summary>
public sealed record SaveVmRequest
{
    /// <summary>The snapshot file to write, on the serve host.</summary>
    public string? Path { get; init; }
}

/// <summary>POST /api/vms/{name}/migrate.</summary>
public sealed record MigrateVmRequest
{
    /// <summary>HOST:PORT of the target's migration listener: another serve's --migration-listen, or a receive --listen.</summary>
    public string? To { get; init; }
}

/// <summary>A live migration that completed: the VM now runs on the target and has left this host.</summary>
public sealed record MigrateVmResult(
    string Name,
    string To,
    string State,
    long InstructionsRetired,
    IReadOnlyList<int> PagesPerRound,
    int FinalPages,
    long DowntimeTicks,
    double DowntimeMilliseconds);

public sealed record HostInfo(
    string Version,
    long HostMemoryBytes,
    long HostMemoryUsedBytes,
    long Quantum,
    long VirtualTicks,
    long Rounds,
    int VmCount,
    IReadOnlyDictionary<string, int> VmsByState,
    string? MigrationEndpoint);

public sealed record VcpuInfo(int Index, string State);

/// <summary>
/// One of the kernel's partitions (<c>GET /api/partitions</c>): the root's own (ID 0, kind "root") or a guest's, with
/// the VM the root manages in it. The root has no guest RAM or vCPUs here: it is the host process.
/// </summary>
public sealed record PartitionInfo(
    int Id,
    string Name,
    string Kind,
    string State,
    string? Vm,
    long MemoryBytes,
    IReadOnlyList<VcpuInfo> Vcpus,
    long InstructionsRetired,
    long Intercepts,
    long ChannelMessages,
    long VirtualTicks);

public sealed record VmStatistics(
    long InstructionsRetired,
    long VirtualTicks,
    long ChannelMessages,
    long Exits,
    IReadOnlyDictionary<string, long> ExitsByKind,
    long Crossings,
    long InterceptTicks,
    long ConsoleBytes);

public sealed record VmExit(string Reason, uint Value, string? Diagnostic);

/// <summary>
/// A live migration under way (<c>migration</c> in a VM's read, while it is being migrated): the target, the phase
/// (<c>pre-copy</c> or <c>final</c>), the pre-copy round, and the pages and bytes sent so far.
/// </summary>
public sealed record MigrationStatus(string To, string Phase, int Round, long Pages, long Bytes);

public sealed record VmInfo(
    string Name,
    string State,
    int PartitionId,
    string Source,
    long MemoryBytes,
    string CommandLine,
    IReadOnlyList<VcpuInfo> Vcpus,
    IReadOnlyList<string> Devices,
    IReadOnlyList<string> SyntheticDevices,
    VmStatistics Statistics,
    VmExit? Exit,
    MigrationStatus? Migration = null);

public sealed record SaveVmResult(string Name, string Path, string State, long InstructionsRetired, long Bytes);
