using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.VmBus;
using HybridVmm.Hypervisor.Apic;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.SynIc;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// The snapshot file format, version 3 (docs/scenarios.md): a <see cref="SavedStateContainer"/> with one chunk
/// per component, each written by that component's own codec. This class only decides which chunks a VM has;
/// a new device or CPU field changes that component's codec, not this file. The same container is what live
/// migration sends for the final device, vCPU and synthetic state. Format version 2 files still restore,
/// through the legacy reader <see cref="SnapshotFormatV2"/>.
/// </summary>
/// <remarks>
/// Chunks, in file order: "partition", "cpu.vp{n}" and "interrupts.vp{n}" per vCPU, "statistics", "clock" (optional: older snapshots
/// lack it), "hv.partition",
/// "synic.vp{n}" per vCPU, "apic.vp{n}" per vCPU (optional: older snapshots lack it), "runstate.vp{n}" per vCPU (only
/// for a VM of more than one vCPU), "root.requests", "device.{name}" per device with state, "vmbus.channel.{relid}"
/// per channel followed by "vmbus.channel.{relid}.{device}" when the device has state, "console" (optional: serve's console
/// backlog, <see cref="ConsoleBacklogCodec"/>), and "memory" last.
/// A chunk this build does not know is refused, so that no state is dropped silently.
/// </remarks>
public static class SnapshotFormat
{
    /// <summary>3: a container of per-component chunks. 2 was one hand-written payload (still read); 1 is refused.</summary>
    public const int Version = SavedStateContainer.Version;

    /// <summary>The largest chunk other than guest memory that is read into memory whole.</summary>
    public const int MaxStateChunkBytes = 2 << 20;

    public static byte[] Serialize(VmSnapshot snapshot)
    {
        using var buffer = new MemoryStream();
        Write(buffer, snapshot);
        return buffer.ToArray();
    }

    /// <summary>Writes the snapshot chunk by chunk straight to <paramref name="destination"/> (which need not seek).</summary>
    public static void Write(Stream destination, VmSnapshot s)
    {
        var w = new SavedStateContainerWriter(destination);
        w.WriteChunk(VmSavedConfigurationCodec.Tag, VmSavedConfigurationCodec.Instance, new VmSavedConfiguration(
            s.Name, s.MemoryBytes, s.CommandLine, s.Devices, s.SyntheticDevices, s.Disk, s.InstructionLimit));
        for (int i = 0; i < s.Processors; i++)
        {
            w.WriteChunk(CpuStateCodec.Tag(i), CpuStateCodec.Instance, s.CpuOf(i));
            w.WriteChunk(InterruptStateCodec.Tag(i), InterruptStateCodec.Instance, CpuInterruptState.Of(s.CpuOf(i)));
        }

        w.WriteChunk(SavedStatisticsCodec.Tag, SavedStatisticsCodec.Instance, new SavedStatistics(s.VirtualTicks, s.ChannelMessages, s.Intercepts));
        if (s.GuestClock is { } guestClock)
        {
            w.WriteChunk(GuestClockCodec.Tag, GuestClockCodec.Instance, guestClock);
        }

        w.WriteChunk(HvPartitionStateCodec.Tag, HvPartitionStateCodec.Instance, s.Enlightened.Partition);
        for (int i = 0; i < s.Enlightened.VirtualProcessors.Count; i++)
        {
            w.WriteChunk(SynicStateCodec.Tag(i), SynicStateCodec.Instance, s.Enlightened.VirtualProcessors[i]);
        }

        for (int i = 0; i < s.Enlightened.VirtualProcessors.Count; i++)
        {
            if (s.Enlightened.VirtualProcessors[i].Apic is { } apic)
            {
                w.WriteChunk(LocalApicStateCodec.Tag(i), LocalApicStateCodec.Instance, apic);
            }
        }

        for (int i = 0; i < s.Enlightened.VirtualProcessors.Count; i++)
        {
            if (s.Enlightened.VirtualProcessors[i].Run is { } run)
            {
                w.WriteChunk(VpRunStateCodec.Tag(i), VpRunStateCodec.Instance, run);
            }
        }

        w.WriteChunk(PendingRootRequestsCodec.Tag, PendingRootRequestsCodec.Instance, s.Enlightened.PendingRequests);
        foreach (DeviceState device in s.DeviceStates)
        {
            w.WriteChunk(device.State);
        }

        foreach (ChannelState channel in s.Channels)
        {
            w.WriteChunk(ChannelStateCodec.Tag(channel.RelId), ChannelStateCodec.Instance, channel);
            if (channel.DeviceState is { } deviceState)
            {
                w.WriteChunk(deviceState);
            }
        }

        if (s.Console is { } console)
        {
            w.WriteChunk(ConsoleBacklogCodec.Tag, ConsoleBacklogCodec.Instance, console);
        }

        w.WriteChunk(GuestMemoryCodec.Tag, new GuestMemoryCodec(s.MemoryBytes), s.Memory);
        w.Finish();
    }

    /// <summary>Parses and verifies a snapshot held in memory; null and a one-line reason when it is corrupt, truncated or of another version.</summary>
    public static VmSnapshot? TryDeserialize(ReadOnlySpan<byte> file, out string error) =>
        TryRead(new MemoryStream(file.ToArray(), writable: false), out error);

    /// <summary>Reads a snapshot from a seekable stream, validating every length against the stream before it allocates.</summary>
    /// <param name="memoryInPlace">Whether guest memory stays in <paramref name="stream"/>, its page numbers checked, to be
    /// read when the VM is restored (<see cref="SnapshotFileMemory"/>, which then owns the stream) rather than copied now.</param>
    public static VmSnapshot? TryRead(Stream stream, out string error, bool memoryInPlace = false)
    {
        Span<byte> start = stackalloc byte[SavedStateContainer.HeaderSize];
        if (stream.Length < start.Length)
        {
            error = $"snapshot is truncated: {stream.Length} bytes, the header alone needs {start.Length}";
            return null;
        }

        stream.Position = 0;
        stream.ReadExactly(start);
        switch (SavedStateContainer.PeekVersion(start))
        {
            case null:
                error = "not a HybridVmm snapshot (bad magic)";
                return null;
            case SnapshotFormatV2.Version:
                return ReadVersion2(stream, out error);
            case SavedStateContainer.Version:
                // Guest memory left in the file has its page numbers checked in the checksum pass (two reads of the file
                // in all, the second the restore's), rather than in a pass of their own.
                GuestMemoryScan? scan = null;
                return SavedStateContainerReader.TryOpen(stream, out error, memoryInPlace ? c => scan = GuestMemoryScan.For(c) : null) is { } container
                    ? FromChunks(container, memoryInPlace ? stream : null, scan, out error)
                    : null;
            case int other:
                error = $"snapshot format version {other} is not supported (this build reads versions {SnapshotFormatV2.Version} and {Version})";
                return null;
        }
    }

    private static VmSnapshot? ReadVersion2(Stream stream, out string error)
    {
        if (stream.Length > int.MaxValue)
        {
            error = $"snapshot of format version 2 is too large to read: {stream.Length} bytes";
            return null;
        }

        byte[] file = new byte[stream.Length];
        stream.Position = 0;
        stream.ReadExactly(file);
        return SnapshotFormatV2.TryDeserialize(file, out error);
    }

    private static VmSnapshot? FromChunks(SavedStateContainerReader container, Stream? memoryFile, GuestMemoryScan? scan, out string error)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        if (ProcessorCountError(container) is { } processorsRefused)
        {
            error = processorsRefused;
            return null;
        }

        if (!TryDecode(container, used, VmSavedConfigurationCodec.Tag, VmSavedConfigurationCodec.Instance, out VmSavedConfiguration? config, out error)
            || !TryDecodeProcessors(container, used, out List<CpuState>? cpus, out error)
            || !TryDecode(container, used, SavedStatisticsCodec.Tag, SavedStatisticsCodec.Instance, out SavedStatistics? statistics, out error)
            || !TryDecode(container, used, HvPartitionStateCodec.Tag, HvPartitionStateCodec.Instance, out HvPartitionSavedState? hv, out error)
            || !TryDecode(container, used, PendingRootRequestsCodec.Tag, PendingRootRequestsCodec.Instance, out IReadOnlyList<PendingRootRequest>? pending, out error)
            || !TryDecode(container, used, GuestMemoryCodec.Tag, new GuestMemoryCodec(config.MemoryBytes, memoryFile, scan), out SavedMemory? memory, out error))
        {
            return null;
        }

        long? guestClock = null;
        if (container.Find(GuestClockCodec.Tag) is not null)
        {
            if (!TryDecode(container, used, GuestClockCodec.Tag, GuestClockCodec.Instance, out long clock, out error))
            {
                return null;
            }

            guestClock = clock;
        }

        ConsoleBacklog? console = null;
        if (container.Find(ConsoleBacklogCodec.Tag) is not null
            && !TryDecode(container, used, ConsoleBacklogCodec.Tag, ConsoleBacklogCodec.Instance, out console, out error))
        {
            return null;
        }

        var vps = new List<VpEnlightenedState>();
        while (container.Find(SynicStateCodec.Tag(vps.Count)) is not null)
        {
            if (!TryDecode(container, used, SynicStateCodec.Tag(vps.Count), SynicStateCodec.Instance, out VpEnlightenedState? vp, out error))
            {
                return null;
            }

            vps.Add(vp);
        }

        for (int i = 0; i < vps.Count; i++)
        {
            // Optional: a snapshot from before the local APIC restores the power-on APIC.
            if (container.Find(LocalApicStateCodec.Tag(i)) is not null)
            {
                if (!TryDecode(container, used, LocalApicStateCodec.Tag(i), LocalApicStateCodec.Instance, out LocalApicState? apic, out error))
                {
                    return null;
                }

                vps[i] = vps[i] with { Apic = apic };
            }

            // Optional: a snapshot of one vCPU, or of an older build, is runnable or halted as "synic.vp{n}" says.
            if (container.Find(VpRunStateCodec.Tag(i)) is not null)
            {
                if (!TryDecode(container, used, VpRunStateCodec.Tag(i), VpRunStateCodec.Instance, out VpRunState? run, out error))
                {
                    return null;
                }

                vps[i] = vps[i] with { Run = run };
            }
        }

        var devices = new List<DeviceState>();
        var channels = new List<ChannelState>();
        foreach (SavedStateChunkEntry entry in container.Chunks)
        {
            if (entry.Tag.StartsWith("device.", StringComparison.Ordinal))
            {
                if (!TryRead(container, used, entry, out SavedStateChunk? chunk, out error))
                {
                    return null;
                }

                devices.Add(new DeviceState(entry.Tag["device.".Length..], chunk));
            }
            else if (entry.Tag.StartsWith("vmbus.channel.", StringComparison.Ordinal) && entry.Tag.Count(c => c == '.') == 2)
            {
                if (!TryDecode(container, used, entry.Tag, ChannelStateCodec.Instance, out ChannelState? channel, out error))
                {
                    return null;
                }

                if (entry.Tag != ChannelStateCodec.Tag(channel.RelId))
                {
                    error = $"snapshot chunk '{entry.Tag}' holds the state of channel {channel.RelId}";
                    return null;
                }

                SavedStateChunk? deviceState = null;
                if (container.Find(ChannelStateCodec.DeviceTag(channel.RelId, channel.Device)) is { } deviceEntry
                    && !TryRead(container, used, deviceEntry, out deviceState, out error))
                {
                    return null;
                }

                channels.Add(channel with { DeviceState = deviceState });
            }
        }

        foreach (SavedStateChunkEntry entry in container.Chunks)
        {
            if (!used.Contains(entry.Tag))
            {
                error = $"snapshot holds chunk '{entry.Tag}' (version {entry.Version}), which this build does not know";
                return null;
            }
        }

        error = "";
        return new VmSnapshot
        {
            Name = config.Name, MemoryBytes = config.MemoryBytes, CommandLine = config.CommandLine, Devices = config.Devices,
            SyntheticDevices = config.SyntheticDevices, Disk = config.Disk, InstructionLimit = config.InstructionLimit,
            Cpu = cpus[0], ApplicationProcessors = cpus.GetRange(1, cpus.Count - 1), VirtualTicks = statistics.VirtualTicks, GuestClock = guestClock,
            ChannelMessages = statistics.ChannelMessages, Intercepts = statistics.Intercepts, DeviceStates = devices,
            Enlightened = new EnlightenedState(hv, vps, pending), Channels = channels, Memory = memory, Console = console,
        };
    }

    /// <summary>
    /// Why the container's vCPU chunks do not make a VM, before any is decoded: more than the kernel's
    /// <see cref="Hypervisor.RootPartitionApi.MaxProcessors"/>, indices with a gap ("cpu.vp0", "cpu.vp2"), or a number
    /// of register chunks ("cpu.vp{n}") other than of SynIC chunks ("synic.vp{n}"), one of each per vCPU. Null when they do.
    /// </summary>
    private static string? ProcessorCountError(SavedStateContainerReader container)
    {
        string? cpuGap = null, synicGap = null;
        int cpus = Count("cpu.vp", ref cpuGap), synics = Count("synic.vp", ref synicGap);
        int max = Hypervisor.RootPartitionApi.MaxProcessors;
        if (cpus > max || synics > max)
        {
            return $"snapshot holds {Math.Max(cpus, synics)} vCPUs, more than the {max} a VM may have";
        }

        if ((cpuGap ?? synicGap) is { } gap)
        {
            return gap;
        }

        if (cpus > 0 && cpus != synics)
        {
            return $"snapshot holds the registers of {cpus} vCPU{(cpus == 1 ? "" : "s")} (chunks cpu.vp*) but the SynIC state of {synics} (chunks synic.vp*): it must hold one of each per vCPU";
        }

        return null;

        // The chunks "{prefix}{n}", which must be n = 0, 1, 2, ... with no gap; the first gap is described in gap.
        int Count(string prefix, ref string? gap)
        {
            var indices = new SortedSet<int>();
            foreach (SavedStateChunkEntry entry in container.Chunks)
            {
                if (entry.Tag.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(entry.Tag.AsSpan(prefix.Length),
                        System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index)
                    && entry.Tag == prefix + index.ToString(System.Globalization.CultureInfo.InvariantCulture))
                {
                    indices.Add(index);
                }
            }

            int expected = 0;
            foreach (int index in indices)
            {
                if (index != expected)
                {
                    gap ??= $"snapshot holds chunk '{prefix}{index}' but no '{prefix}{expected}': its vCPUs must be numbered from 0 with no gap";
                    break;
                }

                expected++;
            }

            return indices.Count;
        }
    }

    /// <summary>Every vCPU's registers with its interrupt state: "cpu.vp{n}" and "interrupts.vp{n}" for n = 0, 1, ... (at least vCPU 0).</summary>
    private static bool TryDecodeProcessors(SavedStateContainerReader container, HashSet<string> used,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out List<CpuState>? cpus, out string error)
    {
        cpus = new List<CpuState>();
        do
        {
            int i = cpus.Count;
            if (!TryDecode(container, used, CpuStateCodec.Tag(i), CpuStateCodec.Instance, out CpuState cpu, out error)
                || !TryDecode(container, used, InterruptStateCodec.Tag(i), InterruptStateCodec.Instance, out CpuInterruptState interrupts, out error))
            {
                cpus = null;
                return false;
            }

            cpus.Add(InterruptStateCodec.Apply(cpu, interrupts));
        }
        while (cpus.Count < Hypervisor.RootPartitionApi.MaxProcessors && container.Find(CpuStateCodec.Tag(cpus.Count)) is not null);

        error = "";
        return true;
    }

    /// <summary>Decodes a required chunk straight from the container's stream through its codec.</summary>
    private static bool TryDecode<TState>(SavedStateContainerReader container, HashSet<string> used, string tag, StateCodec<TState> codec,
        [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out TState state, out string error)
    {
        if (container.Find(tag) is not { } entry)
        {
            state = default;
            error = $"snapshot has no chunk '{tag}'";
            return false;
        }

        used.Add(tag);
        return codec.TryDecode(tag, entry.Version, container.OpenChunk(entry), out state, out error);
    }

    /// <summary>A chunk kept as bytes for its component to decode (a device's state), bounded before it is read.</summary>
    private static bool TryRead(SavedStateContainerReader container, HashSet<string> used, SavedStateChunkEntry entry,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SavedStateChunk? chunk, out string error)
    {
        used.Add(entry.Tag);
        if (container.TryReadChunk(entry, MaxStateChunkBytes, out SavedStateChunk read, out error))
        {
            chunk = read;
            return true;
        }

        chunk = null;
        return false;
    }
}
