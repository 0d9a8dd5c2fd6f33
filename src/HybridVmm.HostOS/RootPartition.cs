using HybridVmm.Guests.Firmware;
using HybridVmm.Guests.Linux;
using HybridVmm.Guests.Multiboot;
using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Worker;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.HostOS;

/// <summary>
/// The privileged root partition: the host OS of the Type 3 picture. It holds the root-only kernel API,
/// runs one <see cref="VmWorker"/> per guest, routes the kernel's intercept messages to them, and offers VM
/// management (create, start, pause, stop). It reaches guests only through the kernel and messages.
/// </summary>
public sealed partial class RootPartition
{
    private readonly RootPartitionApi _api;
    private readonly IGuestConsole _console;
    private readonly Dictionary<int, VirtualMachine> _vms = new();
    private readonly List<Task> _workerTasks = new();
    private readonly object _gate = new();
    private readonly VmBus.VmBusServer _vmbus;
    private readonly VmBus.VirtualSwitch _switch = new();
    private CancellationToken _running;
    private readonly VmBusClock _vmbusClock;

    public RootPartition(HypervisorKernel kernel, IGuestConsole console)
    {
        _api = kernel.ClaimRootApi();
        _vmbus = new VmBus.VmBusServer(_api);
        _vmbusClock = new VmBusClock(_api);
        _console = console;
        _api.Scheduler.RoundCompleted += console.Flush;
    }

    public IReadOnlyList<VirtualMachine> VirtualMachines
    {
        get
        {
            lock (_gate)
            {
                return _vms.Values.OrderBy(v => v.Partition.Id).ToArray();
            }
        }
    }

    /// <summary>Raised on the scheduler thread when a VM reaches the instruction given to <see cref="PauseAtInstruction"/> and pauses.</summary>
    public event Action<PartitionHandle>? BreakpointReached
    {
        add => _api.BreakpointReached += value;
        remove => _api.BreakpointReached -= value;
    }

    /// <summary>Host physical memory not yet given to any partition.</summary>
    public long FreeHostMemoryBytes => _api.FreeMemoryBytes;

    /// <summary>Checks an image and configuration without touching the kernel: what <see cref="CreateVm"/> would load, or why it would refuse.</summary>
    public static PreparedImage? Prepare(VmConfiguration config, out VmCreationError? error)
    {
        if (config.Processors is < 1 or > RootPartitionApi.MaxProcessors)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidConfiguration, $"a VM has 1 to {RootPartitionApi.MaxProcessors} virtual processors, not {config.Processors}");
            return null;
        }

        bool linux = IsLinux(config.Image);
        BzImage? bzImage = null;
        MultibootImage? image = null;
        Vmlinux? vmlinux = null;
        string reason = "";
        bool parsed = BzImage.HasLinuxHeader(config.Image) ? (bzImage = BzImage.TryParse(config.Image, out reason)) is not null
            : linux ? (vmlinux = Vmlinux.TryParse(config.Image, out reason)) is not null
            : (image = MultibootImage.TryParse(config.Image, out reason)) is not null;
        if (!parsed)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidImage, reason);
            return null;
        }

        if (!linux && config.Initrd is not null)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidConfiguration,
                "an initrd is for a Linux kernel; this image is a Multiboot kernel (Multiboot modules are not supported)");
            return null;
        }

        foreach (string device in config.Devices)
        {
            if (!VmConfiguration.KnownDevices.Contains(device) && !VmConfiguration.OptionalDevices.Contains(device))
            {
                error = new VmCreationError(VmCreationErrorKind.InvalidConfiguration,
                    $"unknown device '{device}' (known: {string.Join(", ", VmConfiguration.KnownDevices.Concat(VmConfiguration.OptionalDevices))})");
                return null;
            }
        }

        foreach (string device in config.SyntheticDevices)
        {
            if (!VmConfiguration.KnownSyntheticDevices.Contains(device))
            {
                error = new VmCreationError(VmCreationErrorKind.InvalidConfiguration,
                    $"unknown synthetic device '{device}' (known: {string.Join(", ", VmConfiguration.KnownSyntheticDevices)})");
                return null;
            }
        }

        if (config.SyntheticDevices.Contains("synthblk") && DiskImageError(config.DiskImage) is { } badDisk)
        {
            error = badDisk;
            return null;
        }

        if (config.MemoryBytes % 4096 != 0)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidConfiguration, "guest memory must be a multiple of 4 KiB");
            return null;
        }

        if (linux)
        {
            if (bzImage is not null && config.LinuxBoot == LinuxBootPath.Fast)
            {
                if (KernelPayload.TryUnpack(bzImage, config.MemoryBytes, out reason) is not { } unpacked
                    || (vmlinux = Vmlinux.TryParse(unpacked, out reason)) is null)
                {
                    error = new VmCreationError(VmCreationErrorKind.InvalidImage, reason);
                    return null;
                }
            }

            uint rsdp = config.Devices.Contains("acpi") ? AcpiTables.Address : 0;
            LinuxBootPlan? plan = vmlinux is not null
                ? LinuxBoot.Layout(vmlinux, bzImage, config.MemoryBytes, config.CommandLine, config.Initrd, rsdp, out reason)
                : LinuxBoot.Layout(bzImage!, config.MemoryBytes, config.CommandLine, config.Initrd, out reason);
            if (plan is null)
            {
                error = new VmCreationError(VmCreationErrorKind.InvalidImage, reason);
                return null;
            }

            error = null;
            return new PreparedImage(
                new BootRegisters(plan.Entry, Esi: plan.ZeroPage, CodeSelector: LinuxBoot.BootCodeSelector, DataSelector: LinuxBoot.BootDataSelector),
                [.. Firmware(config), .. plan.Writes]);
        }

        IReadOnlyList<GuestWrite>? writes = BootInformation.Layout(image!, config.MemoryBytes, config.CommandLine, out uint infoAddress, out reason);
        if (writes is null)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidImage, reason);
            return null;
        }

        error = null;
        return new PreparedImage(new BootRegisters(image!.Entry, BootInformation.BootloaderMagic, infoAddress), [.. Firmware(config), .. writes]);
    }

    /// <summary>Whether <paramref name="image"/> is a Linux kernel, a bzImage or a vmlinux ELF, booted with the Linux boot protocol.</summary>
    public static bool IsLinux(ReadOnlySpan<byte> image) => BzImage.HasLinuxHeader(image) || Vmlinux.IsLinuxElf(image);

    /// <summary>
    /// Why <paramref name="diskImage"/> cannot back a synthblk disk, or null: it must be a regular file (a device such
    /// as /dev/zero, a FIFO or a directory is refused before it is opened), whose size is whole 512-byte sectors.
    /// </summary>
    internal static VmCreationError? DiskImageError(string? diskImage)
    {
        if (diskImage is null)
        {
            return new VmCreationError(VmCreationErrorKind.InvalidConfiguration, "synthblk needs a disk image");
        }

        if (Storage.HostFile.NotRegular(diskImage, "disk image", out long size) is { } notRegular)
        {
            return new VmCreationError(VmCreationErrorKind.NoInput, notRegular);
        }

        return size % VmBus.SynthBlockDevice.SectorSize != 0
            ? new VmCreationError(VmCreationErrorKind.InvalidConfiguration, $"disk image '{diskImage}' holds {size} bytes, not a multiple of 512")
            : null;
    }

    /// <summary>
    /// What the platform's firmware leaves in memory before the image: the ACPI tables that describe the I/O APIC and
    /// the ACPI registers, when the VM has them. An image that loads over them wins (its writes come after).
    /// </summary>
    private static IEnumerable<GuestWrite> Firmware(VmConfiguration config) =>
        config.Devices.Contains("acpi") ? [AcpiTables.Build(config.Processors)] : [];

    /// <summary>Loads the image into a new partition with its worker and devices. The VM is created, not started.</summary>
    public VirtualMachine? CreateVm(VmConfiguration config, out VmCreationError? error) =>
        Prepare(config, out error) is { } prepared ? CreateVm(config, prepared, out error) : null;

    /// <summary>
    /// Creates the VM from what <see cref="Prepare"/> returned for <paramref name="config"/>, so that a caller who checked
    /// the image first does not parse it again (a fast Linux boot would unpack its payload twice).
    /// </summary>
    public VirtualMachine? CreateVm(VmConfiguration config, PreparedImage prepared, out VmCreationError? error)
    {
        error = null;
        if (_api.CreatePartition(config.Name, config.MemoryBytes, config.InstructionLimit, config.Processors) is not { } partition)
        {
            error = OutOfMemory(config.MemoryBytes);
            return null;
        }

        foreach (GuestWrite write in prepared.Writes)
        {
            _api.WriteGuestMemory(partition, write.GuestPhysicalAddress, write.Data);
        }

        _api.SetBootState(partition, prepared.Boot);
        return AddWorker(config, partition);
    }

    /// <summary>
    /// Boots a VM that reset the machine again: its partition is deleted (its frames go back to the host) and a new one
    /// is created from <paramref name="config"/>, as at power-on, except for what a PC keeps across a reset: the RTC's
    /// battery-backed clock and CMOS RAM (<see cref="Mc146818Rtc.ContinueAfterReset"/>). Null, with the reason, when
    /// the VM cannot be created again (the old one is deleted either way).
    /// </summary>
    public VirtualMachine? Reboot(VirtualMachine vm, VmConfiguration config, out VmCreationError? error)
    {
        Mc146818Rtc? rtc = vm.Worker.Devices.OfType<Mc146818Rtc>().FirstOrDefault();
        long resetAt = _api.GuestClock(vm.Partition); // the old partition's guest time now; the new one's may differ (a restored VM's offset)
        Delete(vm);
        VirtualMachine? next = CreateVm(config, out error);
        if (rtc is not null && next?.Worker.Devices.OfType<Mc146818Rtc>().FirstOrDefault() is { } newRtc)
        {
            newRtc.ContinueAfterReset(rtc, resetAt, _api.GuestClock(next.Partition));
        }

        return next;
    }

    /// <summary>Live migration: log the pages the guest writes from now on (write-protection through the second-level table).</summary>
    public void StartDirtyTracking(VirtualMachine vm) => _api.StartDirtyTracking(vm.Partition);

    public List<uint> CollectDirtyPages(VirtualMachine vm) => _api.CollectDirtyPages(vm.Partition);

    public void StopDirtyTracking(VirtualMachine vm) => _api.StopDirtyTracking(vm.Partition);

    /// <summary>Rapid provisioning: a clone of a paused template VM, sharing its memory copy-on-write, with copies of its device state.</summary>
    /// <param name="diskOverlay">For a template with a synthetic disk: the clone's own copy-on-write overlay file.</param>
    public VirtualMachine CloneVm(VirtualMachine template, string name, uint identity, string? diskOverlay = null)
    {
        PartitionHandle partition = _api.ClonePartition(template.Partition, name);
        VirtualMachine clone = AddWorker(template.Configuration with { Name = name, DiskOverlay = diskOverlay ?? template.Configuration.DiskOverlay }, partition);
        foreach (IChipsetDevice device in template.Worker.Devices)
        {
            if (device is Hardware.SavedState.IPersistentState persistent && persistent.SaveChunk(Encapsulation.DeviceState.Tag(device.Name)) is { } state
                && clone.Worker.Devices.First(d => d.Name == device.Name) is Hardware.SavedState.IPersistentState copy)
            {
                copy.RestoreChunk(state);
            }
        }

        if (clone.Worker.Devices.OfType<ProvisioningDevice>().FirstOrDefault() is { } provisioning)
        {
            provisioning.Identity = identity;
        }

        return clone;
    }

    /// <summary>
    /// Reads RAM of a VM that is not running (paused or stopped), through the kernel's saved-state access, as
    /// Hyper-V's root inspects a saved VM. False while it runs: a running guest's memory is its own.
    /// </summary>
    public bool ReadMemoryOfStoppedVm(VirtualMachine vm, ulong gpa, Span<byte> destination) =>
        _api.ReadSavedStateMemory(vm.Partition, gpa, destination);

    /// <summary>A vCPU's registers (saved-state access; meaningful while the VM does not run).</summary>
    public Hardware.Cpu.CpuState Registers(VirtualMachine vm, int vpIndex = 0) => _api.GetVpState(vm.Partition, vpIndex);

    public VpState VirtualProcessorState(VirtualMachine vm, int vpIndex = 0) => _api.VirtualProcessorState(vm.Partition, vpIndex);

    /// <summary>Every partition of the kernel, the root's own first (<see cref="RootPartitionApi.Partitions"/>).</summary>
    public IReadOnlyList<PartitionSummary> Partitions() => _api.Partitions();

    /// <summary>Messages queued in a vCPU's SynIC for <paramref name="sint"/> behind a full message slot.</summary>
    public int QueuedSynicMessages(VirtualMachine vm, int sint, int vpIndex = 0) => _api.QueuedSynicMessages(vm.Partition, vpIndex, sint);

    /// <summary>Asserts a fixed interrupt vector on one of the VM's vCPUs, as a device's interrupt line does.</summary>
    public void AssertInterrupt(VirtualMachine vm, byte vector, int vpIndex = 0) => _api.AssertInterrupt(vm.Partition, vpIndex, vector);

    /// <summary>How much of the VM's RAM it shares copy-on-write with its template, and how many pages it has copied.</summary>
    public MemorySharing MemorySharing(VirtualMachine vm) => _api.MemorySharing(vm.Partition);

    /// <summary>Pauses the VM once its boot vCPU has retired <paramref name="instructions"/> instructions in total (a VM of one vCPU: once it has).</summary>
    public void PauseAtInstruction(VirtualMachine vm, long instructions) => _api.PauseAtInstruction(vm.Partition, instructions);

    /// <summary>Each of the VM's vCPUs: instructions retired, HLT exits, IPIs sent and received.</summary>
    public IReadOnlyList<Hypervisor.VcpuStatistics> VcpuStatistics(VirtualMachine vm) => _api.VcpuStatistics(vm.Partition);

    /// <summary>Instructions the VM's boot vCPU has retired, which <see cref="PauseAtInstruction"/> counts (with one vCPU, the VM's).</summary>
    public long BootInstructionsRetired(VirtualMachine vm) => _api.BootInstructionsRetired(vm.Partition);

    private VmCreationError OutOfMemory(ulong bytes) => new(VmCreationErrorKind.OutOfHostMemory,
        $"not enough host memory for {bytes / (1024 * 1024)} MiB ({_api.FreeMemoryBytes / (1024 * 1024)} MiB free)");

    private VirtualMachine AddWorker(VmConfiguration config, PartitionHandle partition)
    {
        if (config.Privileges is { } privileges)
        {
            _api.SetPrivileges(partition, privileges);
        }

        var worker = new VmWorker(_api, partition);
        VirtualMachine? vm = null;
        var com1 = new Uart16550(Uart16550.Com1Base, b => _console.Write(vm!, worker.Now, b), worker.Services.InterruptLine(4),
            worker.Services.Clock, worker.Services.CreateTimer);
        var devices = new List<IChipsetDevice>();
        if (config.Devices.Contains("com1"))
        {
            devices.Add(com1);
        }

        if (config.Devices.Contains("debug-exit"))
        {
            devices.Add(new DebugExitDevice(worker.Services.Control));
        }

        if (config.Devices.Contains("provisioning"))
        {
            devices.Add(new ProvisioningDevice(worker.Services.Control, config.CaptureTemplate));
        }

        devices.AddRange(ChipsetDevices(config, worker.Services));
        if (devices.OfType<DualPic8259>().FirstOrDefault() is { } pic)
        {
            worker.ConnectInterruptController(pic);
        }

        if (devices.OfType<IoApic>().FirstOrDefault() is { } ioapic)
        {
            worker.ConnectIoApic(ioapic);
        }

        foreach (IChipsetDevice device in devices)
        {
            worker.Attach(config.InjectDeviceFailure is { } failure && failure.Device == device.Name
                ? new FlakyDevice(device, failure.OnAccess)
                : device);
        }

        vm = new VirtualMachine(config, partition, worker, com1, _api);
        if (_api.Hosting == Hypervisor.Intercepts.DeviceHosting.Type1)
        {
            // Type 1: the same device models, run by the kernel itself instead of a root worker.
            _api.InstallInKernelDevices(partition, message => worker.Handle(message));
        }

        vm.Channels = _vmbus.AddPartition(partition, CreateSyntheticDevices(config, vm));
        lock (_gate)
        {
            _vms.Add(partition.Id, vm);
            if (_running.CanBeCanceled)
            {
                _workerTasks.Add(Task.Run(() => worker.RunAsync(_running)));
            }
        }

        return vm;
    }

    /// <summary>The PC chipset devices the configuration names.</summary>
    private static IEnumerable<IChipsetDevice> ChipsetDevices(VmConfiguration config, DeviceServices services)
    {
        int processors = config.Processors;
        foreach (string name in config.Devices)
        {
            IChipsetDevice? device = name switch
            {
                // QEMU sets fw_cfg's command line only for a Linux boot; a Multiboot kernel reads the Multiboot one.
                "fw-cfg" => new FwCfgDevice(config.MemoryBytes, (ushort)processors, IsLinux(config.Image) ? config.CommandLine : null),
                "post" => new PostCodePort(),
                "port92" => new SystemControlPortA(services.Control),
                "i8042" => new I8042Controller(services.Control),
                "rtc" => new Mc146818Rtc(services.Clock, config.RtcEpoch, config.MemoryBytes, processors,
                    services.InterruptLine(Mc146818Rtc.Irq), services.CreateTimer),
                "pci" => new PciConfigMechanism1(services.Control),
                "pic" => new DualPic8259(),
                "pit" => new Pit8254(services.Clock, services.InterruptLine(Pit8254.Irq), services.CreateTimer),
                "ioapic" => new IoApic(AcpiTables.IoApicId(processors), services.SignalMsi),
                "acpi" => new AcpiPmDevice(services.Clock, services.Control, services.InterruptLine(AcpiPmDevice.Sci), services.CreateTimer),
                HyperVTestDevice.DeviceName when services.Synic is { } synic => new HyperVTestDevice(synic),
                _ => null,
            };
            if (device is not null)
            {
                yield return device;
            }
        }
    }

    private IEnumerable<VmBus.IVmBusDevice> CreateSyntheticDevices(VmConfiguration config, VirtualMachine vm)
    {
        var devices = new List<VmBus.IVmBusDevice>();
        foreach (string name in config.SyntheticDevices)
        {
            if (name == "synthcon")
            {
                var console = new VmBus.SynthConsoleDevice((time, b) => _console.Write(vm, time, b), _vmbusClock);
                if (config.ConsoleInput is { } input) console.QueueInput(input);
                devices.Add(console);
            }
            else if (name == "synthnet")
            {
                // A locally administered MAC that names the partition: 02:48:56:00:00:<id>.
                var nic = new VmBus.SynthNetDevice(_switch, new byte[] { 0x02, 0x48, 0x56, 0x00, (byte)(vm.Partition.Id >> 8), (byte)vm.Partition.Id });
                devices.Add(nic);
            }
            else if (name == "synthblk")
            {
                // The image stays open until the VM is deleted (or the system disposed): the root may still
                // serve requests the guest made just before it stopped.
                devices.Add(config.DiskOverlay is { } overlay
                    ? new VmBus.SynthBlockDevice(new Storage.CopyOnWriteDisk(config.DiskImage!, overlay))
                    : new VmBus.SynthBlockDevice(config.DiskImage!));
            }
        }

        return devices;
    }

    /// <summary>The virtual switch that connects the guests' synthetic NICs.</summary>
    public VmBus.VirtualSwitch VirtualSwitch => _switch;

    public void Start(VirtualMachine vm) => _api.Start(vm.Partition);

    public void Pause(VirtualMachine vm) => _api.Pause(vm.Partition);

    public void Stop(VirtualMachine vm) => _api.Stop(vm.Partition);

    /// <summary>Stops the VM and returns its memory to the kernel.</summary>
    public void Delete(VirtualMachine vm)
    {
        lock (_gate)
        {
            _vms.Remove(vm.Partition.Id);
        }

        _api.Delete(vm.Partition);
        _vmbus.RemovePartition(vm.Partition);
        ReleaseDevices(vm);
        vm.Worker.Inbox.Complete();
    }

    private static void ReleaseDevices(VirtualMachine vm)
    {
        foreach (VmBus.VmBusChannel channel in vm.Channels)
        {
            (channel.Device as VmBus.SynthNetDevice)?.Disconnect();
            (channel.Device as IDisposable)?.Dispose();
        }
    }

    /// <summary>Closes what the synthetic devices hold on the host (disk images). Called when the system is disposed.</summary>
    public void ReleaseAllDevices()
    {
        foreach (VirtualMachine vm in VirtualMachines)
        {
            ReleaseDevices(vm);
        }
    }

    public void StopAll()
    {
        foreach (VirtualMachine vm in VirtualMachines)
        {
            Stop(vm);
        }
    }

    /// <summary>
    /// The root's message loop: takes intercepts from the kernel's port and hands each to the worker of the
    /// partition it came from. Runs until cancelled.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _running = cancellationToken;
            _workerTasks.Add(Task.Run(() => _vmbus.RunAsync(cancellationToken), CancellationToken.None));
            foreach (VirtualMachine vm in _vms.Values)
            {
                _workerTasks.Add(Task.Run(() => vm.Worker.RunAsync(cancellationToken), CancellationToken.None));
            }
        }

        // The kernel may hand an intercept straight to its worker on the vCPU's thread (a direct switch) while this
        // loop runs; what comes through the port is routed here.
        _api.ServeDirectly((in InterceptMessage message, out InterceptReply reply) => ServeDirectly(message, out reply, cancellationToken));
        try
        {
            await foreach (InterceptMessage message in _api.Intercepts.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                VirtualMachine? vm = Find(message.PartitionId);
                if (vm is null)
                {
                    // The partition was deleted while its intercept was in flight: nothing to resume.
                    await _api.CompleteInterceptAsync(new InterceptReply(message.PartitionId, message.VpIndex, InterceptAction.Fault, 0, "partition deleted"), cancellationToken).ConfigureAwait(false);
                    continue;
                }

                Routed(vm, message);
                await vm.Worker.Inbox.SendAsync(message, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            _api.ServeDirectly(null);
        }

        Task[] workers;
        lock (_gate)
        {
            workers = _workerTasks.ToArray();
        }

        try
        {
            await Task.WhenAll(workers).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        // Each run starts its own worker tasks; finished ones are dropped, or repeated runs (checkpoints,
        // pre-copy rounds) would pile them up.
        lock (_gate)
        {
            _workerTasks.RemoveAll(task => task.IsCompleted);
        }
    }

    private VirtualMachine? Find(int partitionId)
    {
        lock (_gate)
        {
            return _vms.GetValueOrDefault(partitionId);
        }
    }

    /// <summary>The root hands an intercept to the worker of the partition that raised it.</summary>
    private void Routed(VirtualMachine vm, in InterceptMessage message)
    {
        if (_api.Trace.Enabled)
        {
            _api.Trace.Record(message.VirtualTime, message.PartitionId, message.VpIndex, TraceKind.Message, $"root -> {vm.Worker.Inbox.Name}");
        }

        if (Telemetry.HybridVmmMetrics.RootRoundTrip.Enabled)
        {
            vm.Worker.Routed(message.VpIndex, System.Diagnostics.Stopwatch.GetTimestamp());
        }
    }

    /// <summary>
    /// A direct switch: the intercept goes to its worker on the vCPU's thread when the worker is free, and is served
    /// there with the same routing, trace and devices as through the port.
    /// </summary>
    private DirectSwitch ServeDirectly(in InterceptMessage message, out InterceptReply reply, CancellationToken cancellationToken)
    {
        reply = default;
        VirtualMachine? vm = Find(message.PartitionId);
        if (vm is null || !vm.Worker.TryTake())
        {
            return DirectSwitch.NotTaken;
        }

        Routed(vm, message);
        return vm.Worker.ServeTaken(message, out reply, cancellationToken);
    }

    /// <summary>
    /// The clock synthetic devices read: the virtual time of the VMBus request being served. Chipset devices read
    /// their worker's clock; both are the same <see cref="IDeviceClock"/> service type.
    /// </summary>
    private sealed class VmBusClock(RootPartitionApi api) : IDeviceClock
    {
        public long Now => api.VmBusTime;
    }
}
