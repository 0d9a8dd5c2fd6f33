using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS;

/// <summary>Encapsulation: a VM captured as a <see cref="VmSnapshot"/> and brought back from one (docs/scenarios.md).</summary>
public sealed partial class RootPartition
{
    /// <summary>Encapsulation: captures a paused or stopped VM (at an instruction boundary) as a value.</summary>
    /// <param name="onlyPages">For live migration's final copy: just these pages (zero pages included), instead of every non-zero page.</param>
    /// <param name="identifyDisk">Whether to hash a synthblk disk's contents into its <see cref="DiskReference"/>
    /// (false: its name alone, for a checkpoint that never leaves this process and whose disk runs on).</param>
    /// <param name="copyMemory">Whether to copy the VM's RAM into the snapshot (a checkpoint kept while the VM runs
    /// on). False: the snapshot reads each page from the VM as it is written, with no copy (<see cref="PausedVmMemory"/>),
    /// and must be written before the VM runs again.</param>
    public VmSnapshot CaptureSnapshot(VirtualMachine vm, IReadOnlyCollection<uint>? onlyPages = null, bool identifyDisk = true, bool copyMemory = true)
    {
        IReadOnlyList<uint> pageNumbers = onlyPages is null ? _api.NonZeroPages(vm.Partition) : onlyPages.ToArray();
        SavedMemory memory = copyMemory
            ? SavedMemory.Of(ReadPages(vm, pageNumbers))
            : new PausedVmMemory(pageNumbers, (page, buffer) => _api.ReadSavedStateMemory(vm.Partition, (ulong)page << 12, buffer.Span));

        var devices = new List<DeviceState>();
        foreach (IChipsetDevice device in vm.Worker.Devices)
        {
            if (device is IPersistentState persistent && persistent.SaveChunk(DeviceState.Tag(device.Name)) is { } chunk)
            {
                devices.Add(new DeviceState(device.Name, chunk));
            }
        }

        VmConfiguration c = vm.Configuration;
        PartitionStatistics stats = vm.Statistics;
        DiskReference? disk = null;
        if (c.DiskImage is { } diskPath && vm.Channels.Select(channel => channel.Device).OfType<VmBus.SynthBlockDevice>().FirstOrDefault() is { } block)
        {
            // Written sectors reach the file before a restore or a migration target opens it on its own.
            block.Backend.Flush();
            disk = identifyDisk ? DiskReference.Of(diskPath, block.Backend) : DiskReference.Legacy(diskPath);
        }

        return new VmSnapshot
        {
            Name = c.Name, MemoryBytes = c.MemoryBytes, CommandLine = c.CommandLine, Devices = c.Devices.ToArray(),
            SyntheticDevices = c.SyntheticDevices.ToArray(), Disk = disk,
            InstructionLimit = c.InstructionLimit, Cpu = _api.GetVpState(vm.Partition),
            ApplicationProcessors = Enumerable.Range(1, _api.VpCount(vm.Partition) - 1).Select(i => _api.GetVpState(vm.Partition, i)).ToArray(),
            VirtualTicks = _api.VirtualTicks(vm.Partition), GuestClock = _api.GuestClock(vm.Partition), ChannelMessages = stats.ChannelMessages,
            Intercepts = new SortedDictionary<string, long>(stats.InterceptsByKind.ToDictionary(p => p.Key, p => p.Value), StringComparer.Ordinal),
            DeviceStates = devices, Enlightened = _api.GetEnlightenedState(vm.Partition),
            Channels = vm.Channels.Select(channel => channel.SaveState()).ToArray(), Memory = memory,
        };
    }

    /// <summary>Every RAM page of the VM that is not all zeros.</summary>
    public List<SavedPage> ReadNonZeroPages(VirtualMachine vm) => ReadPages(vm, _api.NonZeroPages(vm.Partition));

    public List<SavedPage> ReadPages(VirtualMachine vm, IEnumerable<uint> pageNumbers)
    {
        var pages = new List<SavedPage>();
        foreach (uint page in pageNumbers)
        {
            byte[] bytes = new byte[4096];
            if (!_api.ReadSavedStateMemory(vm.Partition, (ulong)page << 12, bytes))
            {
                throw new InvalidOperationException($"'{vm.Name}' must be paused or stopped to read its saved state");
            }

            pages.Add(new SavedPage(page, bytes));
        }

        return pages;
    }

    /// <summary>Brings a VM back from a snapshot, created and ready to start where it was saved.</summary>
    /// <remarks>
    /// The order matters: RAM and registers first, then the kernel's synthetic state (grants, SynIC), then the
    /// worker and channels, which reopen on the restored grants without a word to the guest. A synthblk opens
    /// <paramref name="diskImage"/>, the file the host names, which must be the disk the snapshot refers to.
    /// </remarks>
    /// <param name="diskImage">The host's file behind the VM's synthblk disk: never taken from the snapshot (a crafted
    /// snapshot would pick a host file for the guest to write).</param>
    public VirtualMachine? RestoreVm(VmSnapshot snapshot, out VmCreationError? error, string? name = null, string? diskImage = null)
    {
        var config = new VmConfiguration
        {
            Name = name ?? snapshot.Name, Image = Array.Empty<byte>(), MemoryBytes = snapshot.MemoryBytes,
            CommandLine = snapshot.CommandLine, Devices = snapshot.Devices, InstructionLimit = snapshot.InstructionLimit,
            SyntheticDevices = snapshot.SyntheticDevices, DiskImage = diskImage, Processors = snapshot.Processors,
        };
        if (VmNames.Problem(config.Name) is { } badName)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidImage, $"the snapshot's VM name {badName}");
            return null;
        }

        if (RestoreConfigurationError(snapshot, diskImage) is { } invalid)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidConfiguration, invalid);
            return null;
        }

        if (diskImage is not null && DiskImageError(diskImage) is { } badDisk)
        {
            error = badDisk;
            return null;
        }

        if (diskImage is not null && snapshot.Disk?.Mismatch(diskImage) is { } otherDisk)
        {
            error = new VmCreationError(VmCreationErrorKind.InvalidImage, otherDisk);
            return null;
        }

        if (_api.CreatePartition(config.Name, config.MemoryBytes, config.InstructionLimit, config.Processors) is not { } partition)
        {
            error = OutOfMemory(config.MemoryBytes);
            return null;
        }

        // Straight from wherever the pages are (the snapshot file, for a restore) into the new partition's RAM. It has
        // not started, so a page that cannot be read leaves nothing behind but a partition to delete.
        bool written = true;
        string? unreadable = snapshot.Memory.ForEach((number, bytes) => written &= _api.WriteGuestMemory(partition, (ulong)number << 12, bytes));
        if (unreadable is not null || !written)
        {
            _api.Delete(partition);
            error = new VmCreationError(VmCreationErrorKind.InvalidImage, unreadable ?? "snapshot holds a page outside the VM's RAM");
            return null;
        }

        for (int i = 0; i < snapshot.Processors; i++)
        {
            _api.SetVpState(partition, snapshot.CpuOf(i), i);
        }

        _api.RestoreStatistics(partition, snapshot.VirtualTicks, snapshot.ChannelMessages, snapshot.Intercepts);
        if (_api.SetEnlightenedState(partition, snapshot.Enlightened) is { } refused)
        {
            _api.Delete(partition);
            error = new VmCreationError(VmCreationErrorKind.InvalidImage, $"snapshot's synthetic state cannot be restored: {refused}");
            return null;
        }

        VirtualMachine vm = AddWorker(config, partition);
        if (snapshot.GuestClock is { } guestClock)
        {
            // The VM's clock continues from the snapshot's: its devices restore at that time, and run on from it.
            _api.ContinueGuestClock(partition, guestClock);
            vm.Worker.ContinueClock(guestClock);
        }

        foreach (DeviceState state in snapshot.DeviceStates)
        {
            if (RestoreDeviceError(vm.Worker.Devices.FirstOrDefault(d => d.Name == state.Name), state) is { } deviceRefused)
            {
                Delete(vm);
                error = new VmCreationError(VmCreationErrorKind.InvalidImage, deviceRefused);
                return null;
            }
        }

        for (int i = 0; i < vm.Channels.Count; i++)
        {
            if (vm.Channels[i].RestoreState(snapshot.Channels[i]) is { } channelRefused)
            {
                Delete(vm);
                error = new VmCreationError(VmCreationErrorKind.InvalidImage, channelRefused);
                return null;
            }
        }

        error = null;
        return vm;
    }

    /// <summary>
    /// Gives a device its saved chunk; null on success, else why not. A device without state takes only an empty
    /// chunk (format version 2 saved empty bytes for it); a chunk of a version the device's codec does not read
    /// is refused naming the chunk and the version.
    /// </summary>
    private static string? RestoreDeviceError(IChipsetDevice? device, DeviceState state)
    {
        string refused = $"snapshot holds state for device '{state.Name}' that this VM cannot take";
        if (device is not IPersistentState persistent)
        {
            return device is not null && state.State.Payload.Length == 0 ? null : refused;
        }

        if (persistent.VersionRefusal(state.State) is { } version)
        {
            return $"{refused}: {version}";
        }

        return persistent.RestoreChunk(state.State) ? null : refused;
    }

    /// <summary>What a snapshot's configuration lacks to be restored here: known synthetic devices, one channel state each, the host's disk image.</summary>
    private static string? RestoreConfigurationError(VmSnapshot snapshot, string? diskImage)
    {
        foreach (string device in snapshot.SyntheticDevices)
        {
            if (!VmConfiguration.KnownSyntheticDevices.Contains(device))
            {
                return $"snapshot offers unknown synthetic device '{device}'";
            }
        }

        if (snapshot.Processors > Hypervisor.RootPartitionApi.MaxProcessors)
        {
            return $"snapshot holds {snapshot.Processors} vCPUs, more than the {Hypervisor.RootPartitionApi.MaxProcessors} a VM may have";
        }

        if (snapshot.Enlightened.VirtualProcessors.Count != snapshot.Processors)
        {
            return $"snapshot holds the registers of {snapshot.Processors} vCPUs but the synthetic state of {snapshot.Enlightened.VirtualProcessors.Count}";
        }

        if (snapshot.Channels.Count != snapshot.SyntheticDevices.Count)
        {
            return $"snapshot has {snapshot.Channels.Count} channel states for {snapshot.SyntheticDevices.Count} synthetic devices";
        }

        bool hasDisk = snapshot.SyntheticDevices.Contains("synthblk");
        if (hasDisk && diskImage is null)
        {
            return DiskNeeded(snapshot, "the host's configuration (restore --disk, receive --disk, serve --migration-disk, the API's diskImage)");
        }

        if (!hasDisk && diskImage is not null)
        {
            return "the saved VM has no synthblk disk, so it takes no disk image";
        }

        if (snapshot.MemoryBytes % 4096 != 0)
        {
            return "guest memory must be a multiple of 4 KiB";
        }

        return null;
    }

    /// <summary>The refusal when the host named no file for a saved VM's disk; <paramref name="how"/> says how to name one.</summary>
    public static string DiskNeeded(VmSnapshot snapshot, string how) =>
        $"the saved VM has a synthblk disk{(snapshot.Disk is { } disk ? $" (saved as '{disk.Name}')" : "")}: name its file with {how} (a snapshot refers to its disk by identity, never by a host path)";
}
