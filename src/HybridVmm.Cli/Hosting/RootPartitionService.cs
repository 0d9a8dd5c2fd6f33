using HybridVmm.Cli.Common;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Reports;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace HybridVmm.Cli.Hosting;

/// <summary>Where the serve command records its outcome for the exit status.</summary>
public sealed class ServeOutcome
{
    public int ExitStatus { get; set; }
}

/// <summary>
/// The root partition as a hosted service: it creates the configured VMs, runs the root's message loop and
/// worker processes, and on shutdown stops every guest and flushes the traces.
/// </summary>
public sealed class RootPartitionService(
    HybridSystem system,
    IOptions<HybridVmmOptions> options,
    IHostApplicationLifetime lifetime,
    ServeOutcome outcome,
    IEnumerable<IServeVmListener> listeners,
    ILogger<RootPartitionService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var vms = new List<VirtualMachine>();
        foreach (VmOptions vmOptions in options.Value.Vms)
        {
            VirtualMachine? vm = Create(vmOptions);
            if (vm is null)
            {
                system.Root.StopAll();
                lifetime.StopApplication();
                return;
            }

            vms.Add(vm);
        }

        Task root = system.Root.RunAsync(stoppingToken);
        foreach (VirtualMachine vm in vms)
        {
            system.Root.Start(vm);
            logger.LogInformation("VM {Name} started in partition {Partition}", vm.Name, vm.Partition.Id);
            _ = vm.Exited.ContinueWith(t => LogExit(vm, t.Result), TaskScheduler.Default);
        }

        foreach (IServeVmListener listener in listeners)
        {
            for (int i = 0; i < vms.Count; i++)
            {
                listener.Created(vms[i], options.Value.Vms[i].Image);
            }

            listener.RootRunning();
        }

        if (options.Value.ExitWhenGuestsStop)
        {
            await Task.WhenAll(vms.Select(v => v.Exited)).WaitAsync(stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
            lifetime.StopApplication();
        }

        await root;
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        system.Root.StopAll();
        await base.StopAsync(cancellationToken);
        system.Trace.Flush();
        system.Console.Flush();
        if (((system.Console as ConsoleRecorder)?.Inner ?? system.Console) is PrefixedLineConsole lines)
        {
            lines.FlushPartialLines();
        }

        logger.LogInformation("Root partition stopped");
        Console.Out.WriteLine();
        Console.Out.Write(SummaryTable.Render(system.Root.VirtualMachines, system.Kernel.Clock.Ticks));
        Console.Out.Flush();
    }

    private VirtualMachine? Create(VmOptions vmOptions)
    {
        byte[] image;
        try
        {
            image = ImageSource.Read(vmOptions.Image);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogError("VM {Name}: cannot read image '{Image}': {Message}", vmOptions.Name, vmOptions.Image, e.Message);
            outcome.ExitStatus = Cli.Common.ExitStatus.NoInput;
            return null;
        }

        SizeParser.TryParseGuestMemory(vmOptions.Memory, out ulong memory, out _);
        var config = new VmConfiguration
        {
            Name = vmOptions.Name,
            Image = image,
            MemoryBytes = memory,
            CommandLine = vmOptions.CommandLine,
            Devices = vmOptions.Devices,
            SyntheticDevices = vmOptions.SyntheticDevices,
            DiskImage = vmOptions.DiskImage,
            InstructionLimit = vmOptions.MaxInstructions,
            Processors = vmOptions.Cpus,
        };
        VirtualMachine? vm = system.Root.CreateVm(config, out VmCreationError? error);
        if (vm is null)
        {
            logger.LogError("VM {Name}: {Message}", vmOptions.Name, error!.Message);
            outcome.ExitStatus = Cli.Common.ExitStatus.OfCreationError(error.Kind);
            return null;
        }

        if (!string.IsNullOrEmpty(vmOptions.Trace))
        {
            try
            {
                system.Trace.AddPartitionWriter(vm.Partition.Id, Tracing.TraceFiles.Create(vmOptions.Trace), $"trace file '{vmOptions.Trace}'",
                    Tracing.TraceFiles.Rotation(vmOptions.Trace));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                logger.LogError("VM {Name}: cannot write trace file '{Trace}': {Message}", vmOptions.Name, vmOptions.Trace, e.Message);
                outcome.ExitStatus = Cli.Common.ExitStatus.CannotWrite;
                return null;
            }
        }

        return vm;
    }

    private void LogExit(VirtualMachine vm, PartitionExit exit)
    {
        if (exit.Reason == StopReason.GuestFault)
        {
            logger.LogWarning("VM {Name} stopped on a fault; other guests keep running.\n{Diagnostic}", vm.Name, exit.Diagnostic);
        }
        else
        {
            logger.LogInformation("VM {Name} stopped: {Reason} (value {Value})", vm.Name, exit.Reason, exit.ExitValue);
        }
    }
}
