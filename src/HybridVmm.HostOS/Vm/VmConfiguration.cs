namespace HybridVmm.HostOS.Vm;

/// <summary>Everything needed to create one guest VM.</summary>
public sealed record VmConfiguration
{
    public required string Name { get; init; }

    /// <summary>
    /// The kernel image, already read from a file or the embedded samples: a Multiboot v1 kernel, or a Linux bzImage or
    /// vmlinux ELF (booted with the Linux 32-bit boot protocol).
    /// </summary>
    public required byte[] Image { get; init; }

    /// <summary>
    /// How a Linux bzImage boots: its own decompressor in the guest (the default: QEMU's output, byte for byte as
    /// before), or its payload unpacked on the host and the kernel entered past its decompressor. A vmlinux ELF always
    /// boots the second way, a Multiboot kernel neither.
    /// </summary>
    public LinuxBootPath LinuxBoot { get; init; } = LinuxBootPath.Decompressor;

    /// <summary>A Linux kernel's initial RAM disk (ramdisk_image), or null.</summary>
    public byte[]? Initrd { get; init; }

    public ulong MemoryBytes { get; init; } = 64u * 1024 * 1024;

    /// <summary>
    /// Virtual processors (1 to 64): the bootstrap processor starts at the image's entry, the others wait for a start-up
    /// IPI, as a PC's application processors do. The ACPI MADT, fw_cfg and the CMOS report the count.
    /// </summary>
    public int Processors { get; init; } = 1;

    /// <summary>The command line the guest sees, Multiboot's or Linux's (never null; empty by default).</summary>
    public string CommandLine { get; init; } = "";

    /// <summary>Emulated devices the guest's worker provides, by name (see <see cref="KnownDevices"/>).</summary>
    public IReadOnlyList<string> Devices { get; init; } = KnownDevices;

    /// <summary>
    /// COM1, QEMU's debug exit and HybridVmm's provisioning port, then the PC chipset devices: QEMU's fw_cfg, the POST
    /// port 0x80, port 0x92, the 8042, the RTC/CMOS, PCI configuration mechanism 1 with its host bridge, the two 8259
    /// PICs (with the ELCR) that the platform's interrupt lines feed, the 8254 PIT (with port 0x61), the I/O APIC that the
    /// same lines feed, and the ACPI power management registers with the firmware's ACPI tables that describe them.
    /// </summary>
    public static readonly IReadOnlyList<string> KnownDevices = new[] { "com1", "debug-exit", "provisioning", "fw-cfg", "post", "port92", "i8042", "rtc", "pci", "pic", "pit", "ioapic", "acpi" };

    /// <summary>
    /// Devices a VM gets only when asked for by name (<c>run --device</c>): QEMU's hyperv-testdev, which kvm-unit-tests'
    /// Hyper-V tests use to route SINTs and create connections (<see cref="Devices.HyperVTestDevice"/>).
    /// </summary>
    public static readonly IReadOnlyList<string> OptionalDevices = new[] { HostOS.Devices.HyperVTestDevice.DeviceName };

    /// <summary>The date and time (UTC) the RTC shows at the VM's virtual time 0: a fixed epoch, never the host's clock.</summary>
    public DateTime RtcEpoch { get; init; } = DefaultRtcEpoch;

    public static readonly DateTime DefaultRtcEpoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>Fault injection: the named device's driver fails once, on this access (high-availability demos and tests).</summary>
    public (string Device, long OnAccess)? InjectDeviceFailure { get; init; }

    /// <summary>Synthetic (VMBus) devices offered to the guest, in relid order (see <see cref="KnownSyntheticDevices"/>).</summary>
    public IReadOnlyList<string> SyntheticDevices { get; init; } = Array.Empty<string>();

    public static readonly IReadOnlyList<string> KnownSyntheticDevices = new[] { "synthcon", "synthblk", "synthnet" };

    /// <summary>The host disk-image file behind "synthblk" (its size must be a multiple of 512 bytes).</summary>
    public string? DiskImage { get; init; }

    /// <summary>When set, <see cref="DiskImage"/> is a read-only base and the guest's writes go to this copy-on-write overlay file.</summary>
    public string? DiskOverlay { get; init; }

    /// <summary>Bytes the synthetic console delivers to the guest as input once it opens the channel.</summary>
    public byte[]? ConsoleInput { get; init; }

    /// <summary>What the guest may do through synthetic MSRs and hypercalls; a child's defaults when null.</summary>
    public Hypervisor.Hv1.HvPartitionPrivileges? Privileges { get; init; }

    /// <summary>Stop the guest after this many instructions; zero means no limit.</summary>
    public long InstructionLimit { get; init; }

    /// <summary>
    /// VM management will freeze this VM as a template when it writes the provisioning port (rapid provisioning
    /// sets it). Otherwise nobody would ever take the frozen VM, so the port ignores writes, as a device whose
    /// function is not enabled does, and reads still return the identity (0).
    /// </summary>
    public bool CaptureTemplate { get; init; }
}
