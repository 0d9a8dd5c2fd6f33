using HybridVmm.HostOS;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Hosting;

/// <summary>The hypervisor kernel as a hosted service: its scheduler runs until the host stops.</summary>
public sealed class HypervisorService(HybridSystem system, ILogger<HypervisorService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        logger.LogInformation("Hypervisor kernel started: {Memory} MiB host memory, quantum {Quantum} instructions",
            system.Kernel.Options.HostMemoryBytes >> 20, system.Kernel.Options.Quantum);
        try
        {
            await system.Kernel.Scheduler.RunAsync(untilIdle: false, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        system.Trace.Flush();
        logger.LogInformation("Hypervisor kernel stopped after {Rounds} scheduling rounds, virtual time {Ticks} ticks",
            system.Kernel.Scheduler.Rounds, system.Kernel.Clock.Ticks);
    }
}
