using System.Buffers.Binary;
using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// Checks the page numbers of a snapshot file's "memory" chunk (<see cref="GuestMemoryCodec"/>, version 1) as the
/// container's checksum pass reads the file, so that a restore reads the file twice, not three times: once to verify it
/// (checksum, and every page number against the VM's layout) before any partition exists, once to read the pages straight
/// into the restored VM's RAM. It holds eight bytes at a time; what it finds is reported, with the message the codec
/// itself gives, when the chunk is decoded in its turn (<see cref="GuestMemoryCodec.Read"/>), after the chunks before it.
/// </summary>
public sealed class GuestMemoryScan : ISavedStateChunkScan
{
    private const int RecordBytes = 4 + GuestMemoryCodec.PageSize;

    private readonly byte[] _field = new byte[4];
    private long _seen;
    private long _pages = -1;

    private GuestMemoryScan(SavedStateChunkEntry entry, ulong memoryBytes)
    {
        Entry = entry;
        MemoryBytes = memoryBytes;
    }

    public SavedStateChunkEntry Entry { get; }

    /// <summary>The VM size the page numbers were checked against (the "partition" chunk's, as the file held it).</summary>
    public ulong MemoryBytes { get; }

    /// <summary>The first page number outside the VM's RAM, as the codec words it; null when every one is RAM.</summary>
    public string? Error { get; private set; }

    /// <summary>Whether the whole chunk went past (the checksum pass read the file to its end).</summary>
    public bool Complete => _seen == Entry.Length;

    /// <summary>
    /// A scan of <paramref name="container"/>'s memory chunk, sized by its partition chunk; null when either is missing,
    /// of another version, or malformed (the chunks' own decoding then refuses the file, in its order, as before).
    /// </summary>
    public static GuestMemoryScan? For(SavedStateContainerReader container)
    {
        if (container.Find(VmSavedConfigurationCodec.Tag) is not { } partition
            || container.Find(GuestMemoryCodec.Tag) is not { Version: 1 } memory
            || !VmSavedConfigurationCodec.Instance.TryDecode(partition.Tag, partition.Version, container.OpenChunk(partition), out VmSavedConfiguration? config, out _))
        {
            return null;
        }

        return new GuestMemoryScan(memory, config.MemoryBytes);
    }

    public void Observe(ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        while (i < bytes.Length)
        {
            long at = _seen + i;
            if (at < 4)
            {
                // The page count: pages past a count the codec refuses are never checked (it refuses the count first).
                _field[(int)at] = bytes[i++];
                if (at == 3)
                {
                    int count = BinaryPrimitives.ReadInt32LittleEndian(_field);
                    _pages = count < 0 || (long)count * RecordBytes > Entry.Length - 4 ? 0 : count;
                }

                continue;
            }

            long record = (at - 4) / RecordBytes, inRecord = (at - 4) % RecordBytes;
            if (record >= _pages)
            {
                break; // bytes after the last page: the codec's end check reports them
            }

            if (inRecord < 4)
            {
                _field[(int)inRecord] = bytes[i++];
                if (inRecord == 3)
                {
                    uint number = BinaryPrimitives.ReadUInt32LittleEndian(_field);
                    if (Error is null && !Hardware.Memory.GuestRam.IsRamPage(MemoryBytes, number))
                    {
                        Error = GuestMemoryCodec.OutsideMessage(number, MemoryBytes);
                    }
                }

                continue;
            }

            i += (int)Math.Min(RecordBytes - inRecord, bytes.Length - i); // the page's bytes: only the restore reads them
        }

        _seen += bytes.Length;
    }
}
