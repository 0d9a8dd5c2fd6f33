using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace HybridVmm.Hardware.SavedState;

/// <summary>Where one chunk lies in a container.</summary>
public readonly record struct SavedStateChunkEntry(string Tag, int Version, long Offset, long Length);

/// <summary>
/// Sees one chunk's bytes, in order, as the checksum pass reads them: a component that must check a large chunk (guest
/// memory) does it in that pass instead of reading the file again. What it finds counts only once the checksum matched.
/// </summary>
public interface ISavedStateChunkScan
{
    /// <summary>The chunk whose bytes <see cref="Observe"/> gets.</summary>
    SavedStateChunkEntry Entry { get; }

    /// <summary>The chunk's next bytes (all of them, over the calls, from its first).</summary>
    void Observe(ReadOnlySpan<byte> bytes);
}

/// <summary>
/// Opens a container on a seekable stream and checks it before any chunk is read: the header, the trailer
/// against the stream's length, the SHA-256 (computed in one streamed pass), then every table entry (a valid
/// tag, no duplicate, chunks back to back inside the file). Nothing is allocated from a length the file
/// declares until that length has been checked against the file and a limit. Chunks are then read one at a
/// time, either whole (<see cref="TryReadChunk"/>) or streamed (<see cref="OpenChunk"/>).
/// </summary>
public sealed class SavedStateContainerReader
{
    private readonly Stream _stream;
    private readonly Dictionary<string, SavedStateChunkEntry> _byTag;

    private SavedStateContainerReader(Stream stream, IReadOnlyList<SavedStateChunkEntry> chunks, Dictionary<string, SavedStateChunkEntry> byTag)
    {
        _stream = stream;
        Chunks = chunks;
        _byTag = byTag;
    }

    /// <summary>The chunks in file order.</summary>
    public IReadOnlyList<SavedStateChunkEntry> Chunks { get; }

    public SavedStateChunkEntry? Find(string tag) => _byTag.TryGetValue(tag, out SavedStateChunkEntry entry) ? entry : null;

    /// <summary>Null, and a one-line reason, when the stream is not a sound container of version 3.</summary>
    /// <param name="scanDuringChecksum">Called before the checksum pass with the container as its table describes it (not yet
    /// verified): a chunk scan to feed during that pass, or null. The file is then read once whole, not once for the checksum
    /// and again for the scan. Refusals keep their order: the checksum's first, then the table's.</param>
    public static SavedStateContainerReader? TryOpen(Stream stream, out string error,
        Func<SavedStateContainerReader, ISavedStateChunkScan?>? scanDuringChecksum = null)
    {
        long length = stream.Length;
        const int smallest = SavedStateContainer.HeaderSize + SavedStateContainer.TrailerSize;
        Span<byte> header = stackalloc byte[SavedStateContainer.HeaderSize];
        if (length < SavedStateContainer.HeaderSize)
        {
            error = $"snapshot is truncated: {length} bytes, the header alone needs {SavedStateContainer.HeaderSize}";
            return null;
        }

        stream.Position = 0;
        stream.ReadExactly(header);
        if (SavedStateContainer.PeekVersion(header) is not { } version)
        {
            error = "not a HybridVmm snapshot (bad magic)";
            return null;
        }

        if (version != SavedStateContainer.Version)
        {
            error = $"snapshot container version {version} is not supported (this build reads version {SavedStateContainer.Version})";
            return null;
        }

        if (length < smallest)
        {
            error = $"snapshot is truncated: {length} bytes, the smallest container has {smallest}";
            return null;
        }

        Span<byte> trailer = stackalloc byte[SavedStateContainer.TrailerSize];
        stream.Position = length - SavedStateContainer.TrailerSize;
        stream.ReadExactly(trailer);
        long tableOffset = BinaryPrimitives.ReadInt64LittleEndian(trailer);
        int count = BinaryPrimitives.ReadInt32LittleEndian(trailer[8..]);
        int tableLength = BinaryPrimitives.ReadInt32LittleEndian(trailer[12..]);
        long tableEnd = length - SavedStateContainer.TrailerSize;
        if (tableOffset < SavedStateContainer.HeaderSize || tableLength < 0 || tableOffset > tableEnd || tableEnd - tableOffset != tableLength)
        {
            error = $"snapshot is truncated or damaged: its chunk table ({tableLength} bytes at offset {tableOffset}) does not end where the file's {length} bytes put it";
            return null;
        }

        if (count < 0 || count > SavedStateContainer.MaxChunks || tableLength > (long)count * SavedStateContainer.MaxEntrySize)
        {
            error = $"snapshot is damaged: its table claims {count} chunks in {tableLength} bytes (at most {SavedStateContainer.MaxChunks} chunks of at most {SavedStateContainer.MaxEntrySize} bytes each)";
            return null;
        }

        byte[] expected = trailer[16..].ToArray();
        byte[] table = new byte[tableLength];
        stream.Position = tableOffset;
        stream.ReadExactly(table);
        List<SavedStateChunkEntry>? chunks = ParseTable(table, count, tableOffset, out var byTag, out string tableError);
        var reader = chunks is null ? null : new SavedStateContainerReader(stream, chunks, byTag);
        ISavedStateChunkScan? scan = reader is null ? null : scanDuringChecksum?.Invoke(reader);
        if (!ChecksumMatches(stream, length, expected, scan))
        {
            error = "snapshot is corrupt: its SHA-256 checksum does not match its contents";
            return null;
        }

        error = tableError;
        return reader;
    }

    /// <summary>Reads a whole chunk into memory, refusing one larger than <paramref name="maxBytes"/> before allocating.</summary>
    public bool TryReadChunk(SavedStateChunkEntry entry, int maxBytes, out SavedStateChunk chunk, out string error)
    {
        if (entry.Length > maxBytes)
        {
            chunk = null!;
            error = $"chunk '{entry.Tag}' holds {entry.Length} bytes, more than the {maxBytes} such a chunk may have";
            return false;
        }

        byte[] payload = new byte[entry.Length];
        _stream.Position = entry.Offset;
        _stream.ReadExactly(payload);
        chunk = new SavedStateChunk(entry.Tag, entry.Version, payload);
        error = "";
        return true;
    }

    /// <summary>A reader over one chunk's payload, straight from the stream (for a chunk too large to hold twice, such as guest memory).</summary>
    public SavedStateReader OpenChunk(SavedStateChunkEntry entry)
    {
        _stream.Position = entry.Offset;
        return new SavedStateReader(_stream, entry.Length);
    }

    private static bool ChecksumMatches(Stream stream, long length, ReadOnlySpan<byte> expected, ISavedStateChunkScan? scan)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 16];
        stream.Position = 0;
        long at = 0;
        for (long left = length - 32; left > 0;)
        {
            int n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n <= 0)
            {
                return false;
            }

            hash.AppendData(buffer, 0, n);
            if (scan is { Entry: var entry })
            {
                // The part of this buffer that lies in the scanned chunk.
                long from = Math.Max(at, entry.Offset), to = Math.Min(at + n, entry.Offset + entry.Length);
                if (from < to)
                {
                    scan.Observe(buffer.AsSpan((int)(from - at), (int)(to - from)));
                }
            }

            at += n;
            left -= n;
        }

        return hash.GetHashAndReset().AsSpan().SequenceEqual(expected);
    }

    private static List<SavedStateChunkEntry>? ParseTable(byte[] table, int count, long tableOffset, out Dictionary<string, SavedStateChunkEntry> byTag, out string error)
    {
        byTag = new Dictionary<string, SavedStateChunkEntry>(StringComparer.Ordinal);
        var chunks = new List<SavedStateChunkEntry>(count);
        long expectedOffset = SavedStateContainer.HeaderSize;
        int at = 0;
        for (int i = 0; i < count; i++)
        {
            int tagLength = at < table.Length ? table[at] : -1;
            if (tagLength < 1 || tagLength > SavedStateChunk.MaxTagLength || at + 1 + tagLength + 20 > table.Length)
            {
                error = $"snapshot chunk table is malformed: entry {i} does not fit";
                return null;
            }

            string tag = Encoding.ASCII.GetString(table, at + 1, tagLength);
            at += 1 + tagLength;
            int version = BinaryPrimitives.ReadInt32LittleEndian(table.AsSpan(at));
            long offset = BinaryPrimitives.ReadInt64LittleEndian(table.AsSpan(at + 4));
            long length = BinaryPrimitives.ReadInt64LittleEndian(table.AsSpan(at + 12));
            at += 20;
            if (!SavedStateChunk.IsValidTag(tag) || version < 1)
            {
                error = $"snapshot chunk table is malformed: entry {i} has tag '{Printable(tag)}' and version {version}";
                return null;
            }

            if (length < 0 || offset != expectedOffset || length > tableOffset - offset)
            {
                error = $"snapshot chunk '{tag}' claims {length} bytes at offset {offset}, which is not where the previous chunk ends or runs past the {tableOffset - SavedStateContainer.HeaderSize} bytes of chunk data";
                return null;
            }

            var entry = new SavedStateChunkEntry(tag, version, offset, length);
            if (!byTag.TryAdd(tag, entry))
            {
                error = $"snapshot has two chunks tagged '{tag}'";
                return null;
            }

            chunks.Add(entry);
            expectedOffset = offset + length;
        }

        if (at != table.Length || expectedOffset != tableOffset)
        {
            error = "snapshot chunk table is malformed: its entries do not account for every byte of the file";
            return null;
        }

        error = "";
        return chunks;
    }

    private static string Printable(string tag) => new(tag.Select(c => c is >= ' ' and < (char)127 ? c : '?').ToArray());
}
