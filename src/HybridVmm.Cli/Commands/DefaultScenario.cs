using HybridVmm.Cli.Common;
using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Reports;

namespace HybridVmm.Cli.Commands;

/// <summary>
/// <c>hybridvmm</c> with no arguments: three different guests (a C program, a hand-written assembly
/// program and a CPU-heavy C program), embedded in the assembly, boot side by side in their own partitions
/// on one hybrid hypervisor. Their output is prefixed with the guest's name; a summary table ends the run.
/// </summary>
public static class DefaultScenario
{
    public static readonly string[] Guests = { "hello", "asmhello", "cpu" };

    public static async Task<int> RunAsync(TextWriter output, TextWriter error, TraceRecorder trace, CancellationToken cancellationToken)
    {
        var console = new PrefixedLineConsole(output);
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 256L << 20 }, console, trace);
        output.WriteLine("HybridVmm: a hybrid (Type 3) hypervisor. Kernel + root partition + 3 guest partitions.");
        output.WriteLine();

        var vms = new List<VirtualMachine>();
        foreach (string name in Guests)
        {
            byte[] image = EmbeddedGuests.Load(name)
                ?? throw new InvalidOperationException($"embedded guest '{name}' is missing from the build");
            var config = new VmConfiguration { Name = name, Image = image, MemoryBytes = 32u << 20, CommandLine = $"partition={name}" };
            VirtualMachine vm = system.Root.CreateVm(config, out VmCreationError? creationError)
                ?? throw new InvalidOperationException($"embedded guest '{name}' was refused: {creationError!.Message}");
            vms.Add(vm);
        }

        foreach (VirtualMachine vm in vms)
        {
            system.Root.Start(vm);
        }

        await system.RunUntilIdleAsync(cancellationToken);
        console.FlushPartialLines();

        output.WriteLine();
        output.Write(SummaryTable.Render(vms, system.Kernel.Clock.Ticks));

        int status = ExitStatus.Success;
        foreach (VirtualMachine vm in vms)
        {
            PartitionExit exit = await vm.Exited;
            int guestStatus = Outcome.Report(vm, exit, error);
            if (guestStatus != ExitStatus.Success && status == ExitStatus.Success)
            {
                status = guestStatus;
            }
        }

        return cancellationToken.IsCancellationRequested ? ExitStatus.Interrupted : status;
    }
}
