using System.CommandLine;
using HybridVmm.Cli.Common;
using HybridVmm.Cluster;
using HybridVmm.HostOS.Encapsulation;

namespace HybridVmm.Cli.Cluster;

/// <summary>
/// <c>hybridvmm vm create NAME --cluster REDIS</c>: a cluster VM from an image (with <c>--cpus N</c>) or from a snapshot
/// file, whose memory and vCPUs are read here for placement (docs/cluster.md#vms-of-several-vcpus). Bad input is one line
/// and a status: 64 usage, 65 not a snapshot, 66 no such file; the cluster's own refusals as for every cluster command.
/// </summary>
internal static class ClusterCreate
{
    /// <summary>How often a protected cluster VM is checkpointed unless --checkpoint-every says otherwise.</summary>
    public const long DefaultCheckpointEvery = 10_000_000;

    public sealed record Options(Argument<string> Name, Option<string?> Image, Option<string?> Snapshot, Option<string?> Memory,
        Option<string?> Append, Option<long?> MaxInstructions, Option<int?> Cpus, Option<bool> Start, Option<bool> Protected, Option<long?> CheckpointEvery);

    public static Task<int> RunAsync(string redis, ParseResult r, Options o, Option[] notInCluster, string? onHost, bool json,
        CancellationToken ct)
    {
        if (notInCluster.FirstOrDefault(x => r.GetResult(x) is not null) is { } stray)
        {
            return Refuse($"{stray.Name} does not go with --cluster yet (a cluster VM is made from --image or --snapshot)");
        }

        string? image = r.GetValue(o.Image), snapshot = r.GetValue(o.Snapshot);
        if ((image is null) == (snapshot is null))
        {
            return Refuse("a cluster VM needs either --image (a Multiboot ELF or bzImage every host can reach, or embedded:NAME) or --snapshot (a snapshot file every host can reach)");
        }

        // The same check and message as run's --cpus.
        int? cpus = r.GetValue(o.Cpus);
        if (cpus is < 1 or > Hypervisor.RootPartitionApi.MaxProcessors)
        {
            return Refuse($"--cpus must be 1 to {Hypervisor.RootPartitionApi.MaxProcessors}, not {cpus}");
        }

        long every = r.GetValue(o.CheckpointEvery) ?? DefaultCheckpointEvery;
        if (every <= 0 || r.GetValue(o.MaxInstructions) is < 0)
        {
            return Refuse("--checkpoint-every must be positive and --max-instructions zero or positive");
        }

        string memory = r.GetValue(o.Memory) ?? "64M";
        string source = HostPath(image ?? snapshot!);
        if (snapshot is not null)
        {
            if (new Option[] { o.Memory, o.Append, o.Cpus }.FirstOrDefault(x => r.GetResult(x) is not null) is { } fromSnapshot)
            {
                return Refuse($"{fromSnapshot.Name} does not go with --snapshot: the VM has the snapshot's memory, vCPUs and command line");
            }

            // The placement counts the snapshot's memory and vCPUs, so they are read from the file here; every host must
            // reach the same file (shared storage), as it must reach an image.
            if (ReadSnapshotShape(source, out ulong snapshotMemory, out int snapshotCpus) is { } unreadable)
            {
                Console.Error.WriteLine($"hybridvmm: error: {unreadable.Message}");
                return Task.FromResult(unreadable.Status);
            }

            memory = snapshotMemory % (1u << 20) == 0 ? $"{snapshotMemory >> 20}M" : $"{snapshotMemory >> 10}K";
            cpus = snapshotCpus;
        }

        var spec = new VmSpec(r.GetValue(o.Name)!, snapshot is null ? source : $"snapshot:{source}", memory, r.GetValue(o.Append) ?? "",
            r.GetValue(o.MaxInstructions) ?? 0, r.GetValue(o.Protected), every, cpus ?? 1, snapshot is null ? null : source);
        return ClusterCommands.CreateAsync(redis, spec, r.GetValue(o.Start), onHost, json, ct);
    }

    /// <summary>
    /// A snapshot's memory and vCPUs, or why it cannot go into the cluster: 66 when it is missing or not a regular file
    /// (checked before it is opened, as restore checks it), 65 when it is not a snapshot or has a disk.
    /// </summary>
    private static InputFile.Refusal? ReadSnapshotShape(string path, out ulong memoryBytes, out int cpus)
    {
        (memoryBytes, cpus) = (0, 0);
        if (InputFile.Check(path, "snapshot", SnapshotFile.MaxBytes, ExitStatus.InvalidImage, "the largest snapshot of a guest this build can run") is { } refusal)
        {
            return refusal;
        }

        VmSnapshot? snapshot = SnapshotFile.TryRead(path, out string error);
        if (snapshot is null)
        {
            return new InputFile.Refusal(ExitStatus.InvalidImage, error);
        }

        using SavedMemory memory = snapshot.Memory;
        if (snapshot.Disk is not null)
        {
            return new InputFile.Refusal(ExitStatus.InvalidImage, $"snapshot '{path}' is of a VM with a synthblk disk, which a cluster VM cannot have yet");
        }

        (memoryBytes, cpus) = (snapshot.MemoryBytes, snapshot.Processors);
        return null;
    }

    private static Task<int> Refuse(string message)
    {
        Console.Error.WriteLine($"hybridvmm: error: {message}");
        return Task.FromResult(ExitStatus.Usage);
    }

    /// <summary>serve runs in its own working directory: a relative path is made absolute here (embedded:NAME stays).</summary>
    private static string HostPath(string path) => path.StartsWith("embedded:", StringComparison.Ordinal) ? path : Path.GetFullPath(path);
}
