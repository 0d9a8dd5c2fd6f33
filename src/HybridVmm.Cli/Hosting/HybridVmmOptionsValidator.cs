using HybridVmm.Cli.Common;
using HybridVmm.Guests;
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

        ulong total = 0;
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < options.Vms.Count; i++)
        {
            VmOptions vm = options.Vms[i];
            string where = $"Vms:{i}";
            if (string.IsNullOrWhiteSpace(vm.Name))
            {
                problems.Add($"{where}:Name is required");
            }
            else if (!names.Add(vm.Name))
            {
                problems.Add($"{where}:Name '{vm.Name}' is used twice");
            }

            if (string.IsNullOrWhiteSpace(vm.Image))
            {
                problems.Add($"{where}:Image is required (a file path or embedded:NAME)");
            }
            else if (ImageSource.IsEmbedded(vm.Image, out string embedded) && !EmbeddedGuests.Names.Contains(embedded))
            {
                problems.Add($"{where}:Image: no embedded guest '{embedded}' (have: {string.Join(", ", EmbeddedGuests.Names)})");
            }
            else if (!ImageSource.IsEmbedded(vm.Image, out _) && !File.Exists(vm.Image))
            {
                problems.Add($"{where}:Image: file '{vm.Image}' does not exist");
            }

            if (!SizeParser.TryParseGuestMemory(vm.Memory, out uint memory, out error))
            {
                problems.Add($"{where}:Memory: {error}");
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

            if (vm.SyntheticDevices.Contains("synthblk") && (vm.DiskImage is null || !File.Exists(vm.DiskImage)))
            {
                problems.Add($"{where}:DiskImage: synthblk needs an existing disk-image file");
            }

            if (vm.MaxInstructions < 0)
            {
                problems.Add($"{where}:MaxInstructions must be zero or positive");
            }
        }

        if (host > 0 && total > host)
        {
            problems.Add($"the VMs need {total >> 20} MiB but HostMemory is {host >> 20} MiB");
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
