using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.HostOS;

/// <summary>
/// One hybrid machine: the hypervisor kernel with the root partition on top of it. The kernel's
/// scheduler and the root's message loop run side by side, as the two halves of the Type 3 design.
/// </summary>
public sealed class HybridSystem : IDisposable
{
    public HybridSystem(HypervisorOptions options, IGuestConsole console, TraceRecorder trace)
    {
        Trace = trace;
        Console = console;
        Kernel = new HypervisorKernel(options, trace);
        Root = new RootPartition(Kernel, console);
        Metrics = new Telemetry.HybridVmmMetrics(SampleVms);
        Kernel.Scheduler.RoundCompleted += Metrics.Capture;
    }

    /// <summary>This machine's part of the <c>HybridVmm</c> meter.</summary>
    public Telemetry.HybridVmmMetrics Metrics { get; }

    public HypervisorKernel Kernel { get; }

    public RootPartition Root { get; }

    public TraceRecorder Trace { get; }

    public IGuestConsole Console { get; }

    /// <summary>Host physical memory currently backing partitions.</summary>
    public long HostMemoryUsedBytes => Kernel.Options.HostMemoryBytes - Root.FreeHostMemoryBytes;

    /// <summary>Runs until no guest can make progress (all stopped or halted), until <paramref name="stopWhen"/>
    /// holds at the end of a scheduling round, or until cancelled.</summary>
    public async Task RunUntilIdleAsync(CancellationToken cancellationToken = default, Func<bool>? stopWhen = null)
    {
        using var rootStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task root = Task.Run(() => Root.RunAsync(rootStop.Token), CancellationToken.None);
        try
        {
            await Kernel.Scheduler.RunAsync(untilIdle: true, cancellationToken, stopWhen).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Root.StopAll();
        }
        finally
        {
            rootStop.Cancel();
            await root.ConfigureAwait(false);
            Trace.Flush();
            Console.Flush();
            Metrics.Capture(); // the counters as the run left them
        }
    }

    /// <summary>Every VM's counters for the meter; at a round barrier, where nothing changes them.</summary>
    private Telemetry.VmSample[] SampleVms()
    {
        IReadOnlyList<VirtualMachine> vms = Root.VirtualMachines;
        var samples = new Telemetry.VmSample[vms.Count];
        for (int i = 0; i < samples.Length; i++)
        {
            VirtualMachine vm = vms[i];
            Hypervisor.Partitions.PartitionStatistics s = vm.Statistics;
            string state = vm.State switch
            {
                Hypervisor.Partitions.PartitionState.Created => "created",
                Hypervisor.Partitions.PartitionState.Running => "running",
                Hypervisor.Partitions.PartitionState.Paused => "paused",
                _ => "stopped",
            };
            samples[i] = new Telemetry.VmSample(vm.Name, state, s.InstructionsRetired, s.ChannelMessages, s.InterceptsByKind.ToArray());
        }

        return samples;
    }

    public void Dispose()
    {
        Kernel.Scheduler.RoundCompleted -= Metrics.Capture;
        Metrics.Dispose();
        Root.ReleaseAllDevices();
        Trace.Dispose();
    }
}
