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
        var session = new SessionOptions();
        var command = new Command("restore", "Continue a VM from a snapshot file; its output goes on where it left off") { file };
        session.AddTo(command);
        command.SetAction((result, cancellationToken) => RestoreAsync(result.GetValue(file)!, session.Read(result), cancellationToken));
        return command;
    }

    private static async Task<int> RestoreAsync(string path, SessionOptions.Values options, CancellationToken cancellationToken)
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

        if (snapshot.MemoryBytes > SizeParser.MaxGuestBytes)
        {
            stderr.WriteLine($"hybridvmm: error: {path}: the snapshot's guest has {snapshot.MemoryBytes >> 20} MiB of memory; this build runs guests of at most {SizeParser.MaxGuestBytes >> 20} MiB");
            return ExitStatus.InvalidImage;
        }

        // A snapshot names its disk by the path it was given. This build writes it absolute; an older snapshot's
        // relative path is taken from the current directory if it is there, else from the snapshot's own directory.
        if (snapshot.DiskImage is { } disk && !Path.IsPathRooted(disk) && !File.Exists(disk))
        {
            snapshot = snapshot with { DiskImage = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, disk) };
        }

        if (options.MaxInstructions > 0)
        {
            snapshot = snapshot with { InstructionLimit = options.MaxInstructions };
        }

        return await SingleVmSession.RunAsync(snapshot.MemoryBytes, options,
            root => (root.RestoreVm(snapshot, out var creationError), creationError), cancellationToken);
    }
}
