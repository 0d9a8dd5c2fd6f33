using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Tests.Support;

/// <summary>A real hybrid system (kernel, root partition, workers) for tests, collecting each guest's COM1 bytes and the trace in memory.</summary>
public sealed class TestMachine : IDisposable
{
    private readonly CapturingConsole _console = new();

    public TestMachine(long hostMemoryBytes = 64L << 20, long quantum = 100_000)
    {
        Trace = new TraceRecorder(null, keepInMemory: true);
        System = new HybridSystem(new HypervisorOptions { HostMemoryBytes = hostMemoryBytes, Quantum = quantum }, _console, Trace);
    }

    public HybridSystem System { get; }

    public TraceRecorder Trace { get; }

    public IReadOnlyList<string> TraceLines => Trace.Lines!;

    public VirtualMachine Create(string name, byte[] image, uint memoryBytes = 4u << 20, string commandLine = "", long instructionLimit = 0)
    {
        var config = new VmConfiguration { Name = name, Image = image, MemoryBytes = memoryBytes, CommandLine = commandLine, InstructionLimit = instructionLimit };
        VirtualMachine? vm = System.Root.CreateVm(config, out VmCreationError? error);
        Assert.That(vm, Is.Not.Null, () => $"VM {name} refused: {error?.Message}");
        return vm!;
    }

    public VirtualMachine Create(VmConfiguration config)
    {
        VirtualMachine? vm = System.Root.CreateVm(config, out VmCreationError? error);
        Assert.That(vm, Is.Not.Null, () => $"VM {config.Name} refused: {error?.Message}");
        return vm!;
    }

    /// <summary>Starts every created VM and runs until none can make progress.</summary>
    public async Task RunAsync()
    {
        foreach (VirtualMachine vm in System.Root.VirtualMachines)
        {
            System.Root.Start(vm);
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await System.RunUntilIdleAsync(timeout.Token);
        Assert.That(timeout.IsCancellationRequested, Is.False, "the machine did not go idle within the safety limit");
    }

    public static async Task<(string Output, PartitionExit Exit, VirtualMachine Vm, TestMachine Machine)> RunOneAsync(byte[] image, uint memoryBytes = 4u << 20, string commandLine = "", long instructionLimit = 0)
    {
        var machine = new TestMachine();
        VirtualMachine vm = machine.Create("guest", image, memoryBytes, commandLine, instructionLimit);
        await machine.RunAsync();
        return (machine.Output(vm), await vm.Exited, vm, machine);
    }

    public string Output(VirtualMachine vm) => _console.Text(vm);

    public void Dispose() => System.Dispose();
}
