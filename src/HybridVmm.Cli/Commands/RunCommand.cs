using System.CommandLine;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm run IMAGE</c>: boots one Multiboot kernel; its COM1 output goes to stdout byte for byte.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "Multiboot v1 ELF32 kernel to boot" };
        var memory = new Option<string>("--memory", "-m") { Description = "Guest RAM, e.g. 64M or 1G", DefaultValueFactory = _ => "64M" };
        var append = new Option<string>("--append") { Description = "Multiboot command line passed to the guest", DefaultValueFactory = _ => "" };
        var trace = new Option<string?>("--trace") { Description = "Write the readable trace to this file" };
        var max = new Option<long>("--max-instructions") { Description = "Stop the guest after N instructions (0 = no limit)" };
        var synthetic = new Option<string>("--synthetic") { Description = "Synthetic (VMBus) devices, comma separated: synthcon, synthblk, synthnet", DefaultValueFactory = _ => "" };
        var disk = new Option<string?>("--disk") { Description = "Disk-image file behind synthblk (size a multiple of 512 bytes)" };
        var command = new Command("run", "Boot one Multiboot kernel in a child partition and print its serial output")
        {
            image, memory, append, trace, max, synthetic, disk,
        };
        command.SetAction((result, cancellationToken) => RunAsync(
            result.GetValue(image)!, result.GetValue(memory)!, result.GetValue(append) ?? "",
            result.GetValue(trace), result.GetValue(max),
            (result.GetValue(synthetic) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            result.GetValue(disk), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string imagePath, string memoryText, string commandLine, string? tracePath, long maxInstructions,
        string[] syntheticDevices, string? diskImage, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (maxInstructions < 0)
        {
            stderr.WriteLine("hybridvmm: error: --max-instructions must be zero or positive");
            return ExitStatus.Usage;
        }

        if (!SizeParser.TryParseGuestMemory(memoryText, out uint memoryBytes, out string sizeError))
        {
            stderr.WriteLine($"hybridvmm: error: {sizeError}");
            return ExitStatus.Usage;
        }

        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(imagePath, cancellationToken);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"hybridvmm: error: cannot read image '{imagePath}': {e.Message}");
            return ExitStatus.NoInput;
        }

        var config = new VmConfiguration
        {
            Name = Path.GetFileNameWithoutExtension(imagePath),
            Image = bytes,
            MemoryBytes = memoryBytes,
            CommandLine = commandLine,
            InstructionLimit = maxInstructions,
            SyntheticDevices = syntheticDevices,
            DiskImage = diskImage,
        };

        // Refuse bad input before the trace file is opened, so a failed run never truncates an old trace.
        if (RootPartition.Prepare(config, out VmCreationError? invalid) is null)
        {
            return Outcome.CreationFailed(invalid!, stderr);
        }

        TraceRecorder? recorder = TraceFiles.Open(tracePath, stderr);
        if (recorder is null)
        {
            return ExitStatus.CannotWrite;
        }

        using Stream stdout = Console.OpenStandardOutput();
        var options = new HypervisorOptions { HostMemoryBytes = memoryBytes + (4L << 20) };
        using var system = new HybridSystem(options, new RawStreamConsole(new BufferedStream(stdout)), recorder);
        VirtualMachine? vm = system.Root.CreateVm(config, out VmCreationError? error);
        if (vm is null)
        {
            return Outcome.CreationFailed(error!, stderr);
        }

        system.Root.Start(vm);
        await system.RunUntilIdleAsync(cancellationToken);
        if (cancellationToken.IsCancellationRequested)
        {
            stderr.WriteLine("hybridvmm: interrupted; guest stopped, trace flushed.");
            return ExitStatus.Interrupted;
        }

        PartitionExit exit = await vm.Exited;
        return Outcome.Report(vm, exit, stderr);
    }
}
