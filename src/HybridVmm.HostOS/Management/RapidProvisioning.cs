using System.Diagnostics;
using HybridVmm.Hypervisor.Partitions;

using HybridVmm.HostOS.Vm;

namespace HybridVmm.HostOS.Management;

/// <summary>What one provisioning run measured. Wall-clock figures are kept apart: they never reach a trace or snapshot.</summary>
public sealed record ProvisioningReport(
    string Template,
    long TemplateInstructions,
    int Clones,
    ulong GuestMemoryBytes,
    long HostBytesUsedAfterCloning,
    long HostBytesUsedAfterRunning,
    IReadOnlyList<CloneResult> Results,
    TimeSpan CloningWallTime)
{
    /// <summary>What N+1 full copies would need.</summary>
    public long FullCopyBytes => (Clones + 1) * (long)GuestMemoryBytes;

    public double ClonesPerSecond => Clones / Math.Max(CloningWallTime.TotalSeconds, 1e-9);
}

public sealed record CloneResult(string Name, uint Identity, long Instructions, long CopyOnWriteCopies, int SharedPages, StopReason Outcome, string Output)
{
    /// <summary>Disk sectors the clone wrote into its own copy-on-write overlay (null without a synthetic disk).</summary>
    public int? PrivateDiskSectors { get; init; }
}

/// <summary>
/// Rapid provisioning: boot a template VM until it asks to be frozen (a write to the provisioning port),
/// then create clones that share its memory copy-on-write through the second-level translation. Each clone
/// gets its own identity; a page becomes private to a clone at its first write.
/// </summary>
public static class RapidProvisioning
{
    /// <param name="overlayDirectory">For a template with a synthetic disk: where the copy-on-write overlays go. The
    /// disk image itself becomes a read-only base shared by the template and every clone.</param>
    public static async Task<ProvisioningReport> RunAsync(HybridSystem system, VmConfiguration template, int clones, Func<VirtualMachine, string> outputOf,
        CancellationToken cancellationToken = default, string? overlayDirectory = null)
    {
        string? Overlay(string name) => template.DiskImage is null ? null
            : Path.Combine(overlayDirectory ?? throw new ArgumentException("a template with a disk needs an overlay directory", nameof(overlayDirectory)), $"{name}.overlay");
        template = template with { DiskOverlay = Overlay(template.Name), CaptureTemplate = true };
        VirtualMachine templateVm = system.Root.CreateVm(template, out VmCreationError? error)
            ?? throw new InvalidOperationException($"template refused: {error!.Message}");
        system.Root.Start(templateVm);
        await system.RunUntilIdleAsync(cancellationToken);
        if (templateVm.State != PartitionState.Paused)
        {
            throw new InvalidOperationException($"template '{template.Name}' ended ({templateVm.State}) without asking to be frozen at the provisioning port");
        }

        var clock = Stopwatch.StartNew();
        var vms = new List<VirtualMachine>();
        for (int i = 1; i <= clones; i++)
        {
            vms.Add(system.Root.CloneVm(templateVm, $"clone{i}", (uint)i, Overlay($"clone{i}")));
        }

        clock.Stop();
        long afterCloning = system.HostMemoryUsedBytes;
        foreach (VirtualMachine vm in vms)
        {
            system.Root.Start(vm);
        }

        await system.RunUntilIdleAsync(cancellationToken);
        long afterRunning = system.HostMemoryUsedBytes;
        var results = new List<CloneResult>();
        foreach (VirtualMachine vm in vms)
        {
            PartitionExit exit = await vm.Exited;
            MemorySharing sharing = system.Root.MemorySharing(vm);
            results.Add(new CloneResult(vm.Name, vm.Worker.Devices.OfType<Devices.ProvisioningDevice>().Single().Identity,
                vm.Statistics.InstructionsRetired, sharing.CopyOnWriteCopies, sharing.SharedPages, exit.Reason, outputOf(vm))
            {
                PrivateDiskSectors = vm.Channels.Select(c => c.Device).OfType<VmBus.SynthBlockDevice>().Select(d => d.Backend)
                    .OfType<Storage.CopyOnWriteDisk>().FirstOrDefault()?.PrivateSectors,
            });
        }

        return new ProvisioningReport(template.Name, templateVm.Statistics.InstructionsRetired, clones, template.MemoryBytes,
            afterCloning, afterRunning, results, clock.Elapsed);
    }
}
