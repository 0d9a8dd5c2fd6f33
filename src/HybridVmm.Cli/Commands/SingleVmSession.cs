using HybridVmm.Cli.Tracing;
using HybridVmm.Cli.Common;
using HybridVmm.Cli.Terminal;
using HybridVmm.HostOS;
using HybridVmm.Reports;
using System.Net.Sockets;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
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
        if (!SerialConsole.TryOpen(options.SerialInput, stderr, out SerialConsole? console, out int refused))
        {
            return refused;
        }

        using (console)
        {
            return await RunAsync(memoryBytes, options, create, console, stderr, cancellationToken);
        }
    }

    private static async Task<int> RunAsync(
        uint memoryBytes,
        SessionOptions.Values options,
        Func<RootPartition, (VirtualMachine? Vm, VmCreationError? Error)> create,
        SerialConsole? console,
        TextWriter stderr,
        CancellationToken cancellationToken)
    {
        byte[]? migrationKey = null;
        if (options.TokenFile is { } tokenFile)
        {
            if (TokenFile.TryRead(tokenFile, stderr, out int unreadable) is not { } token)
            {
                return unreadable;
            }

            migrationKey = MigrationHandshake.Key(token);
        }

        TraceRecorder? recorder = TraceFiles.Open(options.TracePath, stderr);
        if (recorder is null)
        {
            return ExitStatus.CannotWrite;
        }

        var hypervisor = new HypervisorOptions { HostMemoryBytes = memoryBytes + (4L << 20) };
        using var system = new HybridSystem(hypervisor, HostOutput.StandardOutputConsole(), recorder);
        (VirtualMachine? vm, VmCreationError? error) = create(system.Root);
        if (vm is null)
        {
            return Outcome.CreationFailed(error!, stderr);
        }

        if (options.PauseAt > 0)
        {
            system.Root.PauseAtInstruction(vm, options.PauseAt);
        }

        console?.Attach(vm, system, stderr);
        using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, console?.QuitToken ?? CancellationToken.None);
        using var signals = new TerminationSignals(run);
        // A worker may be waiting for the next byte of a pipe that never comes: cancelling the run ends the input.
        using CancellationTokenRegistration endInput = run.Token.Register(() => console?.EndInput());
        system.Root.Start(vm);
        using (Terminal.StatusLine.Start(system, stderr, vm.Name, besideGuestOutput: true))
        {
            await system.RunUntilIdleAsync(run.Token);
        }

        if (console is { QuitRequested: true })
        {
            console.Dispose(); // the terminal as it was before the message
            stderr.WriteLine($"hybridvmm: quit from the console (Ctrl-A x); guest '{vm.Name}' stopped.");
            return ExitStatus.Success;
        }

        if (cancellationToken.IsCancellationRequested || signals.Received)
        {
            console?.Dispose();
            stderr.WriteLine("hybridvmm: interrupted; guest stopped, trace flushed.");
            return ExitStatus.Interrupted;
        }

        if (vm.State == PartitionState.Paused && options.SaveTo is { } path)
        {
            try
            {
                // The pages go from the paused VM's RAM straight to the file, so the VM stays paused until it is written.
                SnapshotFile.Write(path, system.Root.CaptureSnapshot(vm, copyMemory: false));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"hybridvmm: error: cannot write snapshot '{path}': {e.Message}");
                return ExitStatus.CannotWrite;
            }

            stderr.WriteLine($"hybridvmm: saved '{vm.Name}' at instruction {system.Root.BootInstructionsRetired(vm)} to {path}; continue with: hybridvmm restore {path}");
            system.Root.Stop(vm);
            return ExitStatus.Success;
        }

        bool refused = false;
        if (vm.State == PartitionState.Paused && options.MigrateTo is { } target)
        {
            Endpoints.TryParse(target, out System.Net.IPEndPoint? endpoint);
            MigrationReport report;
            // The guest runs its pre-copy windows and may print meanwhile: the line follows run's rule for a terminal stdout.
            using (Terminal.StatusLine? line = Terminal.StatusLine.ForMigration(stderr, $"{vm.Name}: migrating to {endpoint}", besideGuestOutput: true))
            {
                report = await LiveMigration.ToAsync(MigrationHost.Driven(system), vm, endpoint!, migrationKey,
                    new MigrationOptions { PeerTimeout = TimeSpan.FromSeconds(options.MigrateTimeout), Progress = p => line?.Show(p, receiving: false) },
                    cancellationToken);
            }

            refused = report.Refused;
            stderr.WriteLine(refused
                ? $"hybridvmm: error: migration refused: {report.Failure}; the VM keeps running here (the run then ends with status {ExitStatus.PermissionDenied})"
                : $"hybridvmm: {MigrationSummary.Render(report)}");
            if (report.Succeeded)
            {
                return ExitStatus.Success;
            }

            system.Root.Start(vm);
            await system.RunUntilIdleAsync(run.Token);
        }

        PartitionExit exit = await vm.Exited;
        if (options.PauseAt > 0 && system.Root.BootInstructionsRetired(vm) < options.PauseAt)
        {
            stderr.WriteLine($"hybridvmm: the guest ended before instruction {options.PauseAt}; it was neither saved nor migrated.");
        }

        int status = Outcome.Report(vm, exit, stderr);
        return refused ? ExitStatus.PermissionDenied : status;
    }
}
