using HybridVmm.Cli.Common;
using HybridVmm.Guests;
using HybridVmm.HostOS.Vm;
using Microsoft.Extensions.Options;

namespace HybridVmm.Cli.Hosting;

/// <summary>Checks a serve configuration at start, naming every problem at once.</summary>
public sealed class HybridVmmOptionsValidator : IValidateOptions<HybridVmmOptions>
{
    public ValidateOptionsResult Validate(string? name, HybridVmmOptions options)
    {
        var problems = new List<string>();
        if (!SizeParser.TryParse(options.HostMemory, out ulong host, out string error))
        {
            problems.Add($"HostMemory: {error}");
        }
        else if (host < 4096 || (long)host > Hardware.Memory.HostPhysicalMemory.MaxBytes)
        {
            problems.Add($"HostMemory: {options.HostMemory} is out of range: give 4K to {Hardware.Memory.HostPhysicalMemory.MaxBytes >> 20}M");
        }

        if (options.Quantum <= 0)
        {
            problems.Add("Quantum must be positive");
        }

        if (options.OnGuestReset is not ("reboot" or "stop"))
        {
            problems.Add($"OnGuestReset: '{options.OnGuestReset}' is neither 'reboot' nor 'stop'");
        }

        ulong total = 0;
        // Case-insensitive: names become file names (traces, overlays), and some file systems fold case.
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        // Two writers on one trace file would each truncate it and interleave or lose the other's events.
        var traces = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (!string.IsNullOrEmpty(options.Trace))
        {
            traces[Path.GetFullPath(options.Trace)] = "Trace";
        }

        for (int i = 0; i < options.Vms.Count; i++)
        {
            VmOptions vm = options.Vms[i];
            string where = $"Vms:{i}";
            if (string.IsNullOrWhiteSpace(vm.Name))
            {
                problems.Add($"{where}:Name is required");
            }
            else if (VmNames.Problem(vm.Name) is { } badName)
            {
                problems.Add($"{where}:Name {badName}");
            }
            else if (!names.Add(vm.Name))
            {
                problems.Add($"{where}:Name '{vm.Name}' is used twice (names are compared ignoring case)");
            }

            if (!string.IsNullOrEmpty(vm.Trace) && !traces.TryAdd(Path.GetFullPath(vm.Trace), $"{where}:Trace"))
            {
                problems.Add($"{where}:Trace: '{vm.Trace}' is also the file of {traces[Path.GetFullPath(vm.Trace)]}; each trace needs its own file");
            }
            else if (!string.IsNullOrEmpty(vm.Trace) && TraceProblem(vm.Trace) is { } traceProblem)
            {
                problems.Add($"{where}:Trace: {traceProblem}");
            }

            if (string.IsNullOrWhiteSpace(vm.Image))
            {
                problems.Add($"{where}:Image is required (a file path or embedded:NAME)");
            }
            else if (ImageSource.IsEmbedded(vm.Image, out string embedded) && !EmbeddedGuests.Names.Contains(embedded))
            {
                problems.Add($"{where}:Image: no embedded guest '{embedded}' (have: {string.Join(", ", EmbeddedGuests.Names)})");
            }

            if (!SizeParser.TryParseGuestMemory(vm.Memory, out ulong memory, out error))
            {
                problems.Add($"{where}:Memory: {error}");
            }
            else if (!string.IsNullOrWhiteSpace(vm.Image) && !ImageSource.IsEmbedded(vm.Image, out _)
                && InputFile.Check(vm.Image, "file", (long)memory, ExitStatus.InvalidImage, $"the VM's {memory >> 20} MiB of memory") is { } refusal)
            {
                problems.Add($"{where}:Image: {refusal.Message}");
            }

            total += memory;
            foreach (string device in vm.Devices)
            {
                if (!HostOS.Vm.VmConfiguration.KnownDevices.Contains(device))
                {
                    problems.Add($"{where}:Devices: unknown device '{device}' (known: {string.Join(", ", HostOS.Vm.VmConfiguration.KnownDevices)})");
                }
            }

            foreach (string device in vm.SyntheticDevices)
            {
                if (!HostOS.Vm.VmConfiguration.KnownSyntheticDevices.Contains(device))
                {
                    problems.Add($"{where}:SyntheticDevices: unknown synthetic device '{device}' (known: {string.Join(", ", HostOS.Vm.VmConfiguration.KnownSyntheticDevices)})");
                }
            }

            if (vm.SyntheticDevices.Contains("synthblk") && vm.DiskImage is null)
            {
                problems.Add($"{where}:DiskImage: synthblk needs an existing disk-image file");
            }
            else if (vm.SyntheticDevices.Contains("synthblk") && InputFile.Check(vm.DiskImage!, "disk image", long.MaxValue, ExitStatus.InvalidImage) is { } refusal)
            {
                problems.Add($"{where}:DiskImage: synthblk needs an existing disk-image file: {refusal.Message}");
            }

            if (vm.MaxInstructions < 0)
            {
                problems.Add($"{where}:MaxInstructions must be zero or positive");
            }

            if (vm.Cpus is < 1 or > HybridVmm.Hypervisor.RootPartitionApi.MaxProcessors)
            {
                problems.Add($"{where}:Cpus must be 1 to {HybridVmm.Hypervisor.RootPartitionApi.MaxProcessors}, not {vm.Cpus}");
            }
        }

        if (host > 0 && total > host)
        {
            problems.Add($"the VMs need {total >> 20} MiB but HostMemory is {host >> 20} MiB");
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    /// <summary>Why a trace file could not be created where <paramref name="path"/> says, found without creating it.</summary>
    private static string? TraceProblem(string path)
    {
        string full = Path.GetFullPath(path);
        return Directory.Exists(full) ? $"'{path}' is a directory"
            : !Directory.Exists(Path.GetDirectoryName(full)) ? $"the directory of '{path}' does not exist"
            : null;
    }
}
