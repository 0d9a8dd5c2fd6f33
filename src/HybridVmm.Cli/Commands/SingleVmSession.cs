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
    /// <param name="reboot">
    /// A guest that resets the machine boots again from its image (<c>run --reboot</c>), as under QEMU without
    /// <c>-no-reboot</c>; otherwise a reset ends the run.
    /// </param>
    public static async Task<int> RunAsync(
        ulong memoryBytes,
        SessionOptions.Values options,
        Func<RootPartition, (VirtualMachine? Vm, VmCreationError? Error)> create,
        CancellationToken cancellationToken,
        bool reboot = false)
    {
        TextWriter stderr = Console.Error;
        if (!SerialConsole.TryOpen(options.SerialInput, stderr, out SerialConsole? console, out int refused))
        {
            return refused;
        }

        using (console)
        {
            return await RunAsync(memoryBytes, options, create, console, stderr, reboot, cancellationToken);
        }
    }

    private static async Task<int> RunAsync(
        ulong memoryBytes,
        SessionOptions.Values options,
        Func<RootPartition, (VirtualMachine? Vm, VmCreationError? Error)> create,
        SerialConsole? console,
        TextWriter stderr,
        bool reboot,
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

        var hypervisor = new HypervisorOptions { HostMemoryBytes = (long)memoryBytes + (4L << 20) };
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

        // The user quit from the console, or a signal or the caller ended the run: the status to end with, else null.
        int? Ended()
        {
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

            return null;
        }

        if (Ended() is int ended)
        {
            return ended;
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
        int boots = 1;
        bool budgetSpent = false;
        while (reboot && exit.Reason == StopReason.Reset && !run.IsCancellationRequested)
        {
            if (vm.Configuration.InstructionLimit > 0 && system.Root.BootInstructionsRetired(vm) >= vm.Configuration.InstructionLimit)
            {
                budgetSpent = true; // the reset came with the limit's last instruction: no boot is left
                break;
            }

            boots++;
            if (await RebootAsync(system, vm, console, stderr, run.Token) is not { } next)
            {
                return ExitStatus.GuestFault;
            }

            vm = next;
            exit = await vm.Exited;
        }

        if (reboot && Ended() is int endedRebooting)
        {
            return endedRebooting;
        }

        if (options.PauseAt > 0 && system.Root.BootInstructionsRetired(vm) < options.PauseAt)
        {
            stderr.WriteLine($"hybridvmm: the guest ended before instruction {options.PauseAt}; it was neither saved nor migrated.");
        }

        if (boots > 1 && (budgetSpent || exit.Reason == StopReason.InstructionLimit))
        {
            stderr.WriteLine($"hybridvmm: guest '{vm.Name}' reached the instruction limit ({options.MaxInstructions}, over {boots} boots).");
            return ExitStatus.InstructionLimit;
        }

        int status = Outcome.Report(vm, exit, stderr);
        return refused ? ExitStatus.PermissionDenied : status;
    }

    /// <summary>
    /// Boots a guest that reset the machine again: its partition is deleted (its frames go back to the host) and a new
    /// one is created from the same configuration, so the guest finds the machine as at power-on, its image, initrd
    /// and command line loaded again, and the same console. An instruction limit counts the boots together. Null, with
    /// the message written, when the VM cannot be created again.
    /// </summary>
    private static async Task<VirtualMachine?> RebootAsync(HybridSystem system, VirtualMachine vm, SerialConsole? console, TextWriter stderr, CancellationToken cancellationToken)
    {
        VmConfiguration config = vm.Configuration;
        long left = config.InstructionLimit - system.Root.BootInstructionsRetired(vm);
        PartitionExit exit = await vm.Exited;
        stderr.WriteLine(exit.Diagnostic is { } tripleFault
            ? $"hybridvmm: guest '{vm.Name}' {tripleFault.Split('\n')[0]}, which resets a PC; booting it again (--reboot)."
            : $"hybridvmm: guest '{vm.Name}' reset the machine; booting it again (--reboot).");
        VirtualMachine? next = system.Root.Reboot(vm, config with { InstructionLimit = config.InstructionLimit > 0 ? left : 0 }, out VmCreationError? error);
        if (next is null)
        {
            stderr.WriteLine($"hybridvmm: error: guest '{vm.Name}' cannot boot again: {error!.Message}");
            return null;
        }

        console?.MoveTo(next);
        system.Root.Start(next);
        await system.RunUntilIdleAsync(cancellationToken);
        return next;
    }
}
