using HybridVmm.Hardware.Clock;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Tracing;

using HybridVmm.HostOS.Vm;

namespace HybridVmm.HostOS.Management;

/// <summary>One configuration's measurements on the shared workload.</summary>
public sealed record HostingRow(DeviceHosting Hosting, long Instructions, long Exits, long Crossings, long InterceptTicks, long VirtualTicks, long BytesOut, StopReason Outcome)
{
    public double LatencyPerIo => Exits == 0 ? 0 : (double)InterceptTicks / Exits;

    /// <summary>Guest output bytes per virtual second.</summary>
    public double Throughput => BytesOut / (VirtualTicks / (double)VirtualClock.TicksPerSecond);
}

/// <summary>
/// Type 1 vs Type 2 vs Type 3 on the same workload: the same guest and the same device models run under the
/// three <see cref="DeviceHosting"/> configurations of the same code, and the cost model charges each crossing.
/// </summary>
public static class HostingComparison
{
    public static readonly DeviceHosting[] Configurations = { DeviceHosting.Type1, DeviceHosting.Type2, DeviceHosting.Hybrid };

    /// <summary>
    /// Every device but the PIT. Its tick comes every 54.9 ms of virtual time, and each configuration's crossings cost
    /// different time, so the slower ones would see extra ticks: the work would differ, not only its cost.
    /// </summary>
    private static readonly string[] DevicesWithoutTheTimer = VmConfiguration.KnownDevices.Where(d => d != "pit").ToArray();

    /// <summary>The guest's RAM in each configuration.</summary>
    public const uint GuestMemoryBytes = 32u << 20;

    /// <param name="instructionLimit">Stops the guest after this many instructions in each configuration (0 = no limit).</param>
    public static async Task<IReadOnlyList<HostingRow>> RunAsync(byte[] image, string name, CrossingCostModel costs, CancellationToken cancellationToken = default,
        long instructionLimit = 0)
    {
        var rows = new List<HostingRow>();
        foreach (DeviceHosting hosting in Configurations)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                break; // interrupted: the rows so far, for the caller to drop
            }

            var console = new CapturingConsole();
            var options = new HypervisorOptions { HostMemoryBytes = 40L << 20, Hosting = hosting, Costs = costs };
            using var system = new HybridSystem(options, console, new TraceRecorder(null));
            VirtualMachine vm = system.Root.CreateVm(new VmConfiguration { Name = name, Image = image, MemoryBytes = GuestMemoryBytes, Devices = DevicesWithoutTheTimer, InstructionLimit = instructionLimit }, out VmCreationError? error)
                ?? throw new InvalidOperationException(error!.Message);
            system.Root.Start(vm);
            await system.RunUntilIdleAsync(cancellationToken);
            PartitionExit exit = await vm.Exited;
            PartitionStatistics s = vm.Statistics;
            rows.Add(new HostingRow(hosting, s.InstructionsRetired, s.TotalIntercepts, s.Crossings, s.InterceptTicks,
                s.VirtualTicks(system.Kernel.Clock.Ticks), console.Text(vm).Length, exit.Reason));
        }

        return rows;
    }
}
