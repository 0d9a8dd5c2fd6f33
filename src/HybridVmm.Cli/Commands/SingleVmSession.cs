using HybridVmm.HostOS;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Commands;

/// <summary>Runs one VM in the foreground: raw COM1 bytes on stdout, optional trace, optional save at an instruction count.</summary>
internal static class SingleVmSession
{
    public static async Task<int> RunAsync(
        uint memoryBytes,
        SessionOptions.Values options,
        Func<RootPartition, (VirtualMachine? Vm, VmCreationError? Error)> create,
        CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        TraceRecorder? recorder = TraceFiles.Open(options.TracePath, stderr);
        if (recorder is null)
        {
            return ExitStatus.CannotWrite;
        }

        using Stream stdout = Console.OpenStandardOutput();
        var hypervisor = new HypervisorOptions { HostMemoryBytes = memoryBytes + (4L << 20) };
        using var system = new HybridSystem(hypervisor, new RawStreamConsole(new BufferedStream(stdout)), recorder);
        (VirtualMachine? vm, VmCreationError? error) = create(system.Root);
        if (vm is null)
        {
            return Outcome.CreationFailed(error!, stderr);
        }

        if (options.SaveAt > 0)
        {
            system.Root.PauseAtInstruction(vm, options.SaveAt);
        }

        system.Root.Start(vm);
        await system.RunUntilIdleAsync(cancellationToken);
        if (cancellationToken.IsCancellationRequested)
        {
            stderr.WriteLine("hybridvmm: interrupted; guest stopped, trace flushed.");
            return ExitStatus.Interrupted;
        }

        if (vm.State == PartitionState.Paused && options.SaveTo is { } path)
        {
            try
            {
                SnapshotFile.Write(path, system.Root.CaptureSnapshot(vm));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"hybridvmm: error: cannot write snapshot '{path}': {e.Message}");
                return ExitStatus.CannotWrite;
            }

            stderr.WriteLine($"hybridvmm: saved '{vm.Name}' at instruction {vm.Partition.Statistics.InstructionsRetired} to {path}; continue with: hybridvmm restore {path}");
            system.Root.Stop(vm);
            return ExitStatus.Success;
        }

        PartitionExit exit = await vm.Exited;
        if (options.SaveAt > 0)
        {
            stderr.WriteLine($"hybridvmm: the guest ended before instruction {options.SaveAt}; nothing was saved.");
        }

        return Outcome.Report(vm, exit, stderr);
    }
}
