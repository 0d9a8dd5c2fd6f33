using HybridVmm.Cli.Tracing;
using HybridVmm.Cli.Common;
using HybridVmm.Reports;
using System.CommandLine;
using HybridVmm.Guests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm clone</c>: rapid provisioning of N copy-on-write clones from a template VM.</summary>
internal static class CloneCommand
{
    public static Command Create()
    {
        var image = new Option<string>("--guest") { Description = "Embedded guest name or ELF path of the template (it must write to the provisioning port 0x5F0)", DefaultValueFactory = _ => "provision" };
        var count = new Option<int>("--count", "-n") { Description = "Number of clones", DefaultValueFactory = _ => 8 };
        var memory = new Option<string>("--memory", "-m") { Description = "Template RAM", DefaultValueFactory = _ => "8M" };
        var trace = new Option<string?>("--trace") { Description = "Write the readable trace to this file" };
        var disk = new Option<string?>("--disk") { Description = "A read-only base disk image for a synthblk disk; each clone gets a copy-on-write overlay (e.g. --guest provdisk)" };
        var overlays = new Option<string?>("--overlays") { Description = "Directory for the clones' overlay files (default: BASE.overlays)" };
        var max = new Option<long>("--max-instructions") { Description = "Stop the template, and each clone, after N instructions in total (0 = no limit); the status is then 124" };
        var command = new Command("clone", "Boot a template VM to its ready point, then provision copy-on-write clones of it") { image, count, memory, trace, disk, overlays, max };
        command.SetAction((result, cancellationToken) => CloneAsync(result.GetValue(image)!, result.GetValue(count), result.GetValue(memory)!, result.GetValue(trace),
            result.GetValue(disk), result.GetValue(overlays), result.GetValue(max), cancellationToken));
        return command;
    }

    private static async Task<int> CloneAsync(string guest, int count, string memoryText, string? tracePath, string? disk, string? overlays, long maxInstructions, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (maxInstructions < 0)
        {
            stderr.WriteLine("hybridvmm: error: --max-instructions must be zero or positive");
            return ExitStatus.Usage;
        }

        if (count is < 1 or > 256)
        {
            stderr.WriteLine("hybridvmm: error: --count must be between 1 and 256");
            return ExitStatus.Usage;
        }

        if (!SizeParser.TryParseGuestMemory(memoryText, out ulong memoryBytes, out string sizeError))
        {
            stderr.WriteLine($"hybridvmm: error: {sizeError}");
            return ExitStatus.Usage;
        }

        if (disk is not null && InputFile.RefuseDiskImage(disk, stderr) is { } diskRefused)
        {
            return diskRefused;
        }

        (byte[]? bytes, int refused) = await GuestFile.LoadGuestAsync(guest, (long)memoryBytes, stderr, cancellationToken);
        if (bytes is null)
        {
            return refused;
        }

        var config = new VmConfiguration
        {
            Name = Path.GetFileNameWithoutExtension(guest), Image = bytes, MemoryBytes = memoryBytes,
            SyntheticDevices = disk is null ? Array.Empty<string>() : new[] { "synthblk" }, DiskImage = disk,
            InstructionLimit = maxInstructions,
        };
        overlays ??= disk is null ? null : disk + ".overlays";
        if (overlays is not null)
        {
            Directory.CreateDirectory(overlays);
        }

        if (RootPartition.Prepare(config, out VmCreationError? invalid) is null)
        {
            return Outcome.CreationFailed(invalid!, stderr);
        }

        TraceRecorder? recorder = TraceFiles.Open(tracePath, stderr);
        if (recorder is null)
        {
            return ExitStatus.CannotWrite;
        }

        var console = new CapturingConsole(new PrefixedLineConsole(Console.Out));
        // Room for the template plus a private quarter of its RAM per clone: far less than full copies.
        var options = new HypervisorOptions { HostMemoryBytes = (long)memoryBytes + count * ((long)memoryBytes / 4) + (4L << 20) };
        using var system = new HybridSystem(options, console, recorder);
        ProvisioningReport report;
        using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var signals = new TerminationSignals(run);
        try
        {
            // The clones print their lines prefixed on stdout as they run: the status only when stdout goes elsewhere.
            using (Terminal.StatusLine.Start(system, stderr, "clone", besideGuestOutput: true))
            {
                report = await RapidProvisioning.RunAsync(system, config, count, console.Text, run.Token, overlays);
            }
        }
        catch (Exception e) when (run.IsCancellationRequested && e is InvalidOperationException or OperationCanceledException)
        {
            return TerminationSignals.ReportInterrupted(stderr);
        }
        catch (InvalidOperationException) when (system.Root.VirtualMachines.FirstOrDefault() is { } template
            && template.Exited.IsCompleted && template.Exited.Result.Reason == StopReason.InstructionLimit)
        {
            // The template reached --max-instructions before it asked to be frozen.
            return Outcome.Report(template, template.Exited.Result, stderr);
        }
        catch (InvalidOperationException e)
        {
            stderr.WriteLine($"hybridvmm: error: {e.Message}");
            return ExitStatus.InvalidImage;
        }

        if (run.IsCancellationRequested)
        {
            return TerminationSignals.ReportInterrupted(stderr);
        }

        Console.Out.WriteLine();
        Console.Out.Write(ProvisioningTable.Render(report));
        Console.Out.WriteLine($"\ncloning took {report.CloningWallTime.TotalMilliseconds:0.000} ms of wall-clock time: {report.ClonesPerSecond:0} clones per second");
        if (report.Results.FirstOrDefault(c => c.Outcome == StopReason.InstructionLimit) is { } limited)
        {
            stderr.WriteLine($"hybridvmm: clone '{limited.Name}' reached the instruction limit ({maxInstructions}).");
            return ExitStatus.InstructionLimit;
        }

        return ExitStatus.Success;
    }
}
