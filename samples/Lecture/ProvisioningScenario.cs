using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Reports;

namespace HybridVmm.Samples.Lecture;

/// <summary>Rapid provisioning: a template frozen at its ready point, then 16 copy-on-write clones.</summary>
public static class ProvisioningScenario
{
    public static async Task<int> RunAsync(TextWriter output, TextWriter measurements)
    {
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 48L << 20 }, console, new TraceRecorder(null));
        var template = new VmConfiguration { Name = "provision", Image = EmbeddedGuests.Load("provision")!, MemoryBytes = 8u << 20 };
        ProvisioningReport report = await RapidProvisioning.RunAsync(system, template, clones: 16, console.Text);
        output.Write(ProvisioningTable.Render(report));
        measurements.WriteLine($"cloning 16 VMs took {report.CloningWallTime.TotalMilliseconds:0.000} ms of wall-clock time: {report.ClonesPerSecond:0} clones per second");
        return report.Results.All(r => r.Outcome == Hypervisor.Partitions.StopReason.GuestExit) ? 0 : 1;
    }
}
