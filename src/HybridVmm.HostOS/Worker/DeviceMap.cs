using HybridVmm.HostOS.Devices;

namespace HybridVmm.HostOS.Worker;

/// <summary>
/// Which device serves which port or guest-physical address, built as the machine is put together. Every
/// claim is checked against the claims already made, so overlapping devices are refused when the VM is built,
/// not discovered at the first access. Port lookup is one table read; MMIO lookup a binary search.
/// </summary>
public sealed class DeviceMap
{
    private readonly List<IChipsetDevice> _devices = new();
    // Per port: index + 1 of the device claiming it (0: unclaimed). 64 Ki entries, allocated on the first port claim.
    private ushort[]? _ports;
    private readonly List<(MmioRange Range, IChipsetDevice Device)> _mmio = new();

    public IReadOnlyList<IChipsetDevice> Devices => _devices;

    public void Add(IChipsetDevice device)
    {
        if (_devices.Any(d => d.Name == device.Name))
        {
            throw new InvalidOperationException($"a device named '{device.Name}' is already attached");
        }

        IReadOnlyList<PortRange> ports = device.PortIo?.Ports ?? Array.Empty<PortRange>();
        IReadOnlyList<MmioRange> regions = device.Mmio?.Regions ?? Array.Empty<MmioRange>();
        foreach (PortRange range in ports)
        {
            if (range.Last < range.First)
            {
                throw new InvalidOperationException($"{device.Name} claims an empty range: {range}");
            }

            for (int port = range.First; port <= range.Last; port++)
            {
                if (_ports is { } map && map[port] != 0)
                {
                    throw new InvalidOperationException($"{device.Name} {range} overlap {_devices[map[port] - 1].Name}");
                }
            }
        }

        foreach (MmioRange range in regions)
        {
            if (range.Last < range.First)
            {
                throw new InvalidOperationException($"{device.Name} claims an empty range: {range}");
            }

            foreach ((MmioRange taken, IChipsetDevice other) in _mmio)
            {
                if (range.First <= taken.Last && taken.First <= range.Last)
                {
                    throw new InvalidOperationException($"{device.Name} {range} overlaps {other.Name} {taken}");
                }
            }
        }

        _devices.Add(device);
        ushort index = checked((ushort)_devices.Count);
        foreach (PortRange range in ports)
        {
            _ports ??= new ushort[ushort.MaxValue + 1];
            for (int port = range.First; port <= range.Last; port++)
            {
                _ports[port] = index;
            }
        }

        foreach (MmioRange range in regions)
        {
            _mmio.Add((range, device));
        }

        _mmio.Sort((a, b) => a.Range.First.CompareTo(b.Range.First));
    }

    public IChipsetDevice? FindPort(ushort port) => _ports is { } map && map[port] is > 0 and var index ? _devices[index - 1] : null;

    /// <summary>The device whose region holds the whole access at <paramref name="gpa"/>, or null.</summary>
    public IChipsetDevice? FindMmio(uint gpa, int size)
    {
        int lo = 0, hi = _mmio.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            MmioRange range = _mmio[mid].Range;
            if (gpa < range.First)
            {
                hi = mid - 1;
            }
            else if (gpa > range.Last)
            {
                lo = mid + 1;
            }
            else
            {
                return (ulong)gpa + (ulong)Math.Max(size, 1) - 1 <= range.Last ? _mmio[mid].Device : null;
            }
        }

        return null;
    }
}
