namespace HybridVmm.Cli.Hosting;

/// <summary>The "HybridVmm" section of a serve configuration file (appsettings style). Unknown keys are errors.</summary>
public sealed class HybridVmmOptions
{
    public const string Section = "HybridVmm";

    /// <summary>Host physical memory the kernel manages, e.g. "512M".</summary>
    public string HostMemory { get; set; } = "512M";

    /// <summary>Scheduler quantum in instructions.</summary>
    public long Quantum { get; set; } = 100_000;

    /// <summary>A trace file for the whole machine (all partitions), or null.</summary>
    public string? Trace { get; set; }

    /// <summary>Stop the host once every guest has stopped (otherwise it keeps serving until Ctrl+C/SIGTERM).</summary>
    public bool ExitWhenGuestsStop { get; set; }

    /// <summary>
    /// What a guest's reset does (the keyboard controller, port 0xCF9, ACPI): "reboot" boots it again from its image, as
    /// Hyper-V and libvirt (on_reboot=restart) do; "stop" stops it. A host that exits when its guests stop stops them.
    /// </summary>
    public string OnGuestReset { get; set; } = "reboot";

    /// <summary>Whether a guest's reset boots it again (<see cref="OnGuestReset"/>).</summary>
    public bool RebootsGuests => OnGuestReset == "reboot" && !ExitWhenGuestsStop;

    public List<VmOptions> Vms { get; set; } = new();
}

public sealed class VmOptions
{
    public string Name { get; set; } = "";

    /// <summary>A path to a Multiboot ELF, or "embedded:NAME" for a sample guest built into hybridvmm.</summary>
    public string Image { get; set; } = "";

    public string Memory { get; set; } = "64M";

    public string CommandLine { get; set; } = "";

    public List<string> Devices { get; set; } = new(HostOS.Vm.VmConfiguration.KnownDevices);

    /// <summary>Synthetic (VMBus) devices: synthcon, synthblk, synthnet. None by default.</summary>
    public List<string> SyntheticDevices { get; set; } = new();

    /// <summary>The disk-image file behind synthblk.</summary>
    public string? DiskImage { get; set; }

    /// <summary>A trace file for this VM alone, or null.</summary>
    public string? Trace { get; set; }

    public long MaxInstructions { get; set; }

    /// <summary>Virtual processors, 1 to 64.</summary>
    public int Cpus { get; set; } = 1;
}
