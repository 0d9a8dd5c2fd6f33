using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Api;

/// <summary>
/// Saving a VM to a file (the API's save, the cluster's checkpoint) as <c>run --save-to</c> does: the pages go from
/// the paused VM's RAM straight into the file (issue 14, defect 1), so a save costs the writer's buffer, never a copy
/// of the guest's RAM. The VM is captured at a barrier and stays paused, outside the barrier, while the file is
/// written; the other VMs run on meanwhile. Until it is resumed, the API refuses to change it (409).
/// </summary>
public sealed partial class VmManager
{
    /// <summary>
    /// Save: captures the VM at a barrier (a running VM is paused, as Hyper-V's Checkpoint-VM does) and writes the
    /// snapshot file, then resumes a VM that was running. The file restores with <c>hybridvmm restore</c> or a create
    /// from 'snapshot'.
    /// </summary>
    public async Task<ApiOutcome<SaveVmResult>> SaveAsync(string name, SaveVmRequest request, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(request.Path))
        {
            return ApiProblem.BadRequest("'path' is required: the snapshot file to write on the serve host");
        }

        string path = request.Path;
        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null && !Directory.Exists(directory))
        {
            return ApiProblem.NotFound($"directory '{directory}' does not exist");
        }

        ApiOutcome<(long Instructions, string State)> saved = await WritePausedAsync(name,
            vm => vm.State == PartitionState.Stopped ? ApiProblem.Conflict($"'{name}' has stopped; there is nothing to save")
                : new ApiOutcome<string>(StateName(vm.State), null),
            snapshot => SnapshotFile.Write(path, snapshot),
            e => new ApiProblem(e is UnauthorizedAccessException ? 403 : 400, "Cannot write the snapshot", $"cannot write snapshot '{path}': {e.Message}"),
            cancellationToken).ConfigureAwait(false);
        if (saved.Problem is { } problem)
        {
            return problem;
        }

        logger.LogInformation("VM {Name} saved through the API to {Path}", name, path);
        return new SaveVmResult(name, path, saved.Value.State, saved.Value.Instructions, new FileInfo(path).Length);
    }

    /// <summary>
    /// Captures VM <paramref name="name"/> at a barrier without copying its RAM, after <paramref name="atCapture"/>
    /// (which may refuse) has read what goes with the snapshot; pauses it if it runs; writes the snapshot with
    /// <paramref name="write"/> outside the barrier; then, at a barrier again, resumes it if it ran. Returns the
    /// instruction the snapshot was taken at and what <paramref name="atCapture"/> read.
    /// </summary>
    private async Task<ApiOutcome<(long Instructions, T Extra)>> WritePausedAsync<T>(string name, Func<VirtualMachine, ApiOutcome<T>> atCapture,
        Action<VmSnapshot> write, Func<Exception, ApiProblem> writeFailed, CancellationToken cancellationToken)
    {
        ApiOutcome<(ManagedVm Managed, VmSnapshot Snapshot, bool Paused, T Extra)> captured =
            await AtBarrierAsync<(ManagedVm, VmSnapshot, bool, T)>(() =>
            {
                if (Find(name) is not { } m)
                {
                    return ApiProblem.UnknownVm(name);
                }

                if (Busy(m) is { } busy)
                {
                    return busy;
                }

                ApiOutcome<T> extra = atCapture(m.Vm);
                if (extra.Problem is { } refused)
                {
                    return refused;
                }

                bool running = m.Vm.State == PartitionState.Running;
                if (running)
                {
                    system.Root.Pause(m.Vm);
                }

                m.Busy = "being saved";
                try
                {
                    return (m, system.Root.CaptureSnapshot(m.Vm, copyMemory: false), running, extra.Value!);
                }
                catch
                {
                    Resume(m, running);
                    throw;
                }
            }, cancellationToken).ConfigureAwait(false);
        if (captured.Problem is { } problem)
        {
            return problem;
        }

        (ManagedVm managed, VmSnapshot snapshot, bool paused, T value) = captured.Value;
        try
        {
            write(snapshot);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return writeFailed(e);
        }
        finally
        {
            // Not the request's token: a client that went away must not leave the VM paused. A stopping serve answers 503.
            await AtBarrierAsync<bool>(() => Resume(managed, paused), CancellationToken.None).ConfigureAwait(false);
        }

        return (snapshot.Cpu.InstructionsRetired, value);
    }

    /// <summary>The end of a save, at a barrier: the VM may change again, and runs on if it ran before (or its lease was renewed meanwhile).</summary>
    private bool Resume(ManagedVm m, bool paused)
    {
        bool resume = (paused || m.ResumeWhenSaved) && m.Vm.State == PartitionState.Paused;
        m.Busy = null;
        m.ResumeWhenSaved = false;
        if (resume)
        {
            system.Root.Start(m.Vm);
        }

        return true;
    }

    /// <summary>A VM being saved or migrated stays as it is: 409 until its snapshot is written or the migration has ended.</summary>
    private static ApiProblem? Busy(ManagedVm m) => m.Busy switch
    {
        null => null,
        "being saved" => ApiProblem.Conflict($"'{m.Vm.Name}' is being saved; try again once its snapshot is written"),
        string busy => ApiProblem.Conflict($"'{m.Vm.Name}' is {busy}; try again once that has ended"),
    };
}
