using System.Buffers.Binary;

namespace HybridVmm.HostOS.Storage;

/// <summary>
/// A copy-on-write overlay over a read-only base image, one per clone (the idea of a qcow2 or differencing
/// VHDX backing file). The base is opened read-only and never changes. The overlay is an append-only log of
/// records { u64 sector; 512 bytes }; reading a sector takes its latest record, or the base when there is
/// none. Flush makes the log durable (fsync). Reopening replays the log, ignoring a torn last record, so a
/// crash loses at most the writes that were never flushed.
/// </summary>
public sealed class CopyOnWriteDisk : IDiskBackend
{
    private const int RecordSize = 8 + IDiskBackend.SectorSize;

    private readonly FileStream _base;
    private readonly FileStream _overlay;
    private readonly Dictionary<long, long> _index = new();

    public CopyOnWriteDisk(string baseImage, string overlayPath)
    {
        _base = new FileStream(baseImage, FileMode.Open, FileAccess.Read, FileShare.Read);
        _overlay = new FileStream(overlayPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        CapacitySectors = _base.Length / IDiskBackend.SectorSize;
        Replay();
    }

    public long CapacitySectors { get; }

    /// <summary>Sectors this overlay holds privately (the rest are shared with the base and the other clones).</summary>
    public int PrivateSectors => _index.Count;

    public void Read(long sector, Span<byte> destination)
    {
        for (int i = 0; i < destination.Length / IDiskBackend.SectorSize; i++)
        {
            Span<byte> one = destination.Slice(i * IDiskBackend.SectorSize, IDiskBackend.SectorSize);
            if (_index.TryGetValue(sector + i, out long at))
            {
                _overlay.Position = at;
                _overlay.ReadExactly(one);
            }
            else
            {
                _base.Position = (sector + i) * IDiskBackend.SectorSize;
                _base.ReadExactly(one);
            }
        }
    }

    public void Write(long sector, ReadOnlySpan<byte> source)
    {
        Span<byte> record = stackalloc byte[RecordSize];
        for (int i = 0; i < source.Length / IDiskBackend.SectorSize; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(record, sector + i);
            source.Slice(i * IDiskBackend.SectorSize, IDiskBackend.SectorSize).CopyTo(record[8..]);
            long at = _overlay.Length;
            _overlay.Position = at;
            _overlay.Write(record);
            _index[sector + i] = at + 8;
        }
    }

    public void Flush() => _overlay.Flush(flushToDisk: true);

    public void Dispose()
    {
        _overlay.Dispose();
        _base.Dispose();
    }

    private void Replay()
    {
        long whole = _overlay.Length / RecordSize * RecordSize;
        if (whole != _overlay.Length)
        {
            _overlay.SetLength(whole); // a torn record from a crash mid-write was never acknowledged by a flush
        }

        Span<byte> sector = stackalloc byte[8];
        for (long at = 0; at < whole; at += RecordSize)
        {
            _overlay.Position = at;
            _overlay.ReadExactly(sector);
            long number = BinaryPrimitives.ReadInt64LittleEndian(sector);
            if (number >= 0 && number < CapacitySectors)
            {
                _index[number] = at + 8;
            }
        }
    }
}
