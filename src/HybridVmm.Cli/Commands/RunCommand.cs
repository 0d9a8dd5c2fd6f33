using HybridVmm.Cli.Common;
using System.CommandLine;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm run IMAGE</c>: boots one Multiboot kernel or Linux bzImage; its COM1 output goes to stdout byte for byte.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "Kernel to boot: a Multiboot v1 kernel (ELF32 or a.out kludge), a Linux bzImage or a Linux vmlinux ELF" };
        var memory = new Option<string>("--memory", "-m") { Description = "Guest RAM, e.g. 64M or 1G", DefaultValueFactory = _ => "64M" };
        var append = new Option<string>("--append") { Description = "The guest's command line, as QEMU's -append: a Linux kernel gets ARGS, a Multiboot kernel \"IMAGE ARGS\"", DefaultValueFactory = _ => "" };
        var initrd = new Option<string?>("--initrd") { Description = "Initial RAM disk for a Linux kernel (as QEMU's -initrd)" };
        var rtcBase = new Option<string?>("--rtc-base") { Description = "Date and time (UTC) the guest's RTC shows at boot, e.g. 2024-02-29T23:58:00 (default 2000-01-01T00:00:00; never the host's clock)" };
        var synthetic = new Option<string>("--synthetic") { Description = "Synthetic (VMBus) devices, comma separated: synthcon, synthblk, synthnet", DefaultValueFactory = _ => "" };
        var disk = new Option<string?>("--disk") { Description = "Disk-image file behind synthblk (size a multiple of 512 bytes)" };
        var boot = new Option<string>("--boot")
        {
            Description = "How a Linux bzImage boots: decompressor (its own decompressor runs in the guest, as under QEMU) or fast (its payload unpacked on the host, the kernel entered past its decompressor)",
            DefaultValueFactory = _ => "decompressor",
        };
        boot.AcceptOnlyFromAmong("fast", "decompressor");
        var cpus = new Option<int>("--cpus") { Description = "Virtual processors, 1 to 64: the others wait for a start-up IPI (as QEMU's -smp)", DefaultValueFactory = _ => 1 };
        var reboot = new Option<bool>("--reboot")
        {
            Description = "A guest that resets the machine (keyboard controller, port 0xCF9, ACPI reset) boots again from its image, as under QEMU; " +
                "without it a reset ends the run, as QEMU's -no-reboot does",
        };
        var device = new Option<string[]>("--device")
        {
            Description = "Add a device that is not in the default set (as QEMU's -device): hyperv-testdev (QEMU's Hyper-V test device, for kvm-unit-tests)",
            AllowMultipleArgumentsPerToken = false,
        };
        device.AcceptOnlyFromAmong([.. VmConfiguration.OptionalDevices]);
        var session = new SessionOptions();
        var command = new Command("run", "Boot one Multiboot kernel or Linux kernel in a child partition and print its serial output")
        {
            image, memory, append, initrd, boot, synthetic, disk, rtcBase, cpus, device, reboot,
        };
        session.AddTo(command);
        command.SetAction((result, cancellationToken) => RunAsync(
            result.GetValue(image)!, result.GetValue(memory)!, result.GetValue(append) ?? "",
            (result.GetValue(synthetic) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            result.GetValue(disk), result.GetValue(rtcBase), result.GetValue(initrd), result.GetValue(cpus),
            result.GetValue(boot) == "fast" ? LinuxBootPath.Fast : LinuxBootPath.Decompressor, result.GetValue(device) ?? [], result.GetValue(reboot),
            session.Read(result), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string imagePath, string memoryText, string arguments,
        string[] syntheticDevices, string? diskImage, string? rtcBaseText, string? initrdPath, int processors, LinuxBootPath linuxBoot, string[] extraDevices, bool reboot,
        SessionOptions.Values options, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (options.Validate(stderr) is { } usage)
        {
            return usage;
        }

        if (reboot && options.PauseAt > 0)
        {
            stderr.WriteLine("hybridvmm: error: --reboot does not go with --save-at or --migrate-at yet (a guest that reboots would be saved or moved only in its first boot)");
            return ExitStatus.Usage;
        }

        if (processors is < 1 or > Hypervisor.RootPartitionApi.MaxProcessors)
        {
            stderr.WriteLine($"hybridvmm: error: --cpus must be 1 to {Hypervisor.RootPartitionApi.MaxProcessors}, not {processors}");
            return ExitStatus.Usage;
        }

        if (!SizeParser.TryParseGuestMemory(memoryText, out ulong memoryBytes, out string sizeError))
        {
            stderr.WriteLine($"hybridvmm: error: {sizeError}");
            return ExitStatus.Usage;
        }

        DateTime rtcEpoch = VmConfiguration.DefaultRtcEpoch;
        if (rtcBaseText is not null && !DateTime.TryParse(rtcBaseText, System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal, out rtcEpoch))
        {
            stderr.WriteLine($"hybridvmm: error: --rtc-base '{rtcBaseText}' is not a date and time such as 2024-02-29T23:58:00");
            return ExitStatus.Usage;
        }

        // The devices and the disk are command-line values: a wrong one is a usage error, as a malformed --memory is.
        foreach (string device in syntheticDevices)
        {
            if (!VmConfiguration.KnownSyntheticDevices.Contains(device))
            {
                stderr.WriteLine($"hybridvmm: error: --synthetic: unknown synthetic device '{device}' (known: {string.Join(", ", VmConfiguration.KnownSyntheticDevices)})");
                return ExitStatus.Usage;
            }
        }

        if (syntheticDevices.Contains("synthblk") != (diskImage is not null))
        {
            stderr.WriteLine(diskImage is null ? "hybridvmm: error: --synthetic synthblk needs --disk FILE" : "hybridvmm: error: --disk is the disk behind synthblk: add --synthetic synthblk");
            return ExitStatus.Usage;
        }

        if (diskImage is not null)
        {
            if (InputFile.RefuseDiskImage(diskImage, stderr) is { } diskRefused)
            {
                return diskRefused;
            }

            // A snapshot keeps this path: absolute, so that a restore from another directory finds the same disk.
            diskImage = Path.GetFullPath(diskImage);
        }

        int refused = ExitStatus.NoInput;
        void Refuse(int status, string message)
        {
            refused = status;
            stderr.WriteLine($"hybridvmm: error: {message}");
        }

        if (await GuestFile.ReadAsync(imagePath, (long)memoryBytes, "image", Refuse, cancellationToken) is not { } bytes)
        {
            return refused;
        }

        byte[]? initrdBytes = null;
        if (initrdPath is not null && (initrdBytes = await GuestFile.ReadAsync(initrdPath, (long)memoryBytes, "initrd", Refuse, cancellationToken)) is null)
        {
            return refused;
        }

        bool linux = RootPartition.IsLinux(bytes);

        var config = new VmConfiguration
        {
            Name = VmNames.Printable(Path.GetFileNameWithoutExtension(imagePath)),
            Image = bytes,
            MemoryBytes = memoryBytes,
            Processors = processors,
            // As QEMU's Multiboot loader (and GRUB) do: the kernel's path as given, a space, then the arguments
            // (the space is there even when there are none). Guests such as kvm-unit-tests read word 0 as their name.
            // A Linux kernel gets the arguments alone, as from QEMU's -append.
            CommandLine = linux ? arguments : $"{imagePath} {arguments}",
            Initrd = initrdBytes,
            LinuxBoot = linuxBoot,
            RtcEpoch = rtcEpoch,
            InstructionLimit = options.MaxInstructions,
            SyntheticDevices = syntheticDevices,
            DiskImage = diskImage,
            Devices = extraDevices.Length == 0 ? VmConfiguration.KnownDevices : [.. VmConfiguration.KnownDevices, .. extraDevices.Distinct()],
        };

        // Refuse bad input before the trace file is opened, so a failed run never truncates an old trace.
        if (RootPartition.Prepare(config, out VmCreationError? invalid) is not { } prepared)
        {
            return Outcome.CreationFailed(invalid!, stderr);
        }

        return await SingleVmSession.RunAsync(memoryBytes, options, root => (root.CreateVm(config, prepared, out VmCreationError? error), error), cancellationToken, reboot);
    }
}
