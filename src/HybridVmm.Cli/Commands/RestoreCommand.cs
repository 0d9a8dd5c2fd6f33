using HybridVmm.Cli.Common;
using System.CommandLine;
using HybridVmm.HostOS.Encapsulation;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm restore FILE</c>: continues a saved VM exactly where it stopped.</summary>
internal static class RestoreCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("FILE") { Description = "Snapshot written by run/restore --save-to" };
        var disk = new Option<string?>("--disk") { Description = "The disk-image file behind the saved VM's synthblk disk: it must be the disk it was saved with (a snapshot never names a host file)" };
        var session = new SessionOptions();
        var command = new Command("restore", "Continue a VM from a snapshot file; its output goes on where it left off") { file, disk };
        session.AddTo(command);
        command.SetAction((result, cancellationToken) => RestoreAsync(result.GetValue(file)!, result.GetValue(disk), session.Read(result), cancellationToken));
        return command;
    }

    private static async Task<int> RestoreAsync(string path, string? disk, SessionOptions.Values options, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (options.Validate(stderr) is { } usage)
        {
            return usage;
        }

        if (InputFile.Check(path, "snapshot", SnapshotFile.MaxBytes, ExitStatus.InvalidImage, "the largest snapshot of a guest this build can run") is { } refusal)
        {
            stderr.WriteLine($"hybridvmm: error: {refusal.Message}");
            return refusal.Status;
        }

        VmSnapshot? snapshot = SnapshotFile.TryRead(path, out string error);
        if (snapshot is null)
        {
            stderr.WriteLine($"hybridvmm: error: {error}");
            return ExitStatus.InvalidImage;
        }

        using SavedMemory memory = snapshot.Memory; // the open snapshot file, which the restore reads guest RAM from
        // The host names the disk; the snapshot only refers to it (issue 14, defect 4), and restore checks it is that disk.
        if (DiskUsage(snapshot, disk) is { } diskUsage)
        {
            stderr.WriteLine($"hybridvmm: error: {diskUsage}");
            return ExitStatus.Usage;
        }

        if (disk is not null)
        {
            if (InputFile.RefuseDiskImage(disk, stderr) is { } diskRefused)
            {
                return diskRefused;
            }

            disk = Path.GetFullPath(disk);
            if (snapshot.Disk?.Mismatch(disk) is { } otherDisk)
            {
                stderr.WriteLine($"hybridvmm: error: {otherDisk}");
                return ExitStatus.InvalidImage;
            }

            // Verified here, before the trace file is opened (bad input never truncates a trace), so RestoreVm need
            // not read the whole disk a second time.
            snapshot = snapshot with { Disk = null };
        }

        if (options.MaxInstructions > 0)
        {
            snapshot = snapshot with { InstructionLimit = options.MaxInstructions };
        }

        return await SingleVmSession.RunAsync(snapshot.MemoryBytes, options,
            root =>
            {
                HostOS.Vm.VirtualMachine? vm = root.RestoreVm(snapshot, out var creationError, diskImage: disk);
                memory.Dispose(); // the pages are in the VM: the file is closed before the guest runs (and perhaps saves over it)
                return (vm, creationError);
            }, cancellationToken);
    }

    /// <summary>A usage error when --disk is missing for a saved VM with a synthblk disk, or given for one without; else null.</summary>
    public static string? DiskUsage(HostOS.Encapsulation.VmSnapshot snapshot, string? disk) =>
        snapshot.SyntheticDevices.Contains("synthblk")
            ? disk is null ? HostOS.RootPartition.DiskNeeded(snapshot, "--disk FILE") : null
            : disk is not null ? "--disk is the file behind a saved synthblk disk, and the saved VM has none" : null;
}
