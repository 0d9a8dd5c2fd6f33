using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace HybridVmm.Hardware.SavedState;

/// <summary>
/// The container of saved-state chunks (docs/scenarios.md, "File format" under Encapsulation). It knows tags, versions
/// and lengths, never what a chunk holds. All integers are little-endian.
/// <code>
/// 0       8   magic "HVMMSNAP"
/// 8       4   container version (3; versions 1 and 2 were one hand-written payload)
/// 12      4   reserved, 0
/// 16      ... chunk payloads, back to back, in table order
/// T       ... chunk table, one entry per chunk: u8 tag length, tag (ASCII), i32 version, u64 offset, u64 length
/// end-48  8   T, the table's offset
/// end-40  4   chunk count
/// end-36  4   table length in bytes
/// end-32  32  SHA-256 of every byte before it
/// </code>
/// The table and the checksum come last so that a writer can stream each chunk once, straight to a file or a
/// socket, hashing as it goes, without knowing any length in advance or seeking back.
/// </summary>
public static class SavedStateContainer
{
    public const int Version = 3;
    public const int HeaderSize = 16;
    public const int TrailerSize = 8 + 4 + 4 + 32;

    /// <summary>A VM has a few chunks per vCPU, device and channel; this bounds the table whatever a file claims.</summary>
    public const int MaxChunks = 4096;

    /// <summary>The largest table entry: tag length, the longest tag, version, offset and length.</summary>
    public const int MaxEntrySize = 1 + SavedStateChunk.MaxTagLength + 4 + 8 + 8;

    public static ReadOnlySpan<byte> Magic => "HVMMSNAP"u8;

    /// <summary>The container version of a file that starts with the magic, or null when it does not.</summary>
    public static int? PeekVersion(ReadOnlySpan<byte> start) =>
        start.Length >= 12 && start[..8].SequenceEqual(Magic) ? BinaryPrimitives.ReadInt32LittleEndian(start[8..]) : null;

    /// <summary>Writes a whole container of in-memory chunks.</summary>
    public static void Write(Stream destination, IEnumerable<SavedStateChunk> chunks)
    {
        var writer = new SavedStateContainerWriter(destination);
        foreach (SavedStateChunk chunk in chunks)
        {
            writer.WriteChunk(chunk);
        }

        writer.Finish();
    }

    public static byte[] ToBytes(IEnumerable<SavedStateChunk> chunks)
    {
        using var buffer = new MemoryStream();
        Write(buffer, chunks);
        return buffer.ToArray();
    }
}

/// <summary>
/// Writes a container chunk by chunk, in one pass and without seeking: each payload goes straight to the
/// destination while the SHA-256 is computed incrementally; <see cref="Finish"/> appends the table and trailer.
/// </summary>
public sealed class SavedStateContainerWriter
{
    private readonly HashingStream _out;
    private readonly List<(string Tag, int Version, long Offset, long Length)> _table = new();
    private readonly HashSet<string> _tags = new(StringComparer.Ordinal);
    private bool _finished;

    public SavedStateContainerWriter(Stream destination)
    {
        _out = new HashingStream(destination);
        Span<byte> header = stackalloc byte[SavedStateContainer.HeaderSize];
        SavedStateContainer.Magic.CopyTo(header);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], SavedStateContainer.Version);
        _out.Write(header);
    }

    public void WriteChunk(SavedStateChunk chunk) => WriteChunk(chunk.Tag, chunk.Version, w => w.WriteBytes(chunk.Payload));

    /// <summary>Writes <paramref name="state"/> as the chunk <paramref name="tag"/> through its codec, straight to the destination.</summary>
    public void WriteChunk<TState>(string tag, StateCodec<TState> codec, TState state) => WriteChunk(tag, codec.Version, w => codec.Write(w, state));

    /// <summary>Writes one chunk whose payload <paramref name="write"/> produces straight into the destination.</summary>
    public void WriteChunk(string tag, int version, Action<SavedStateWriter> write)
    {
        if (_finished || !SavedStateChunk.IsValidTag(tag) || version < 1 || !_tags.Add(tag) || _table.Count == SavedStateContainer.MaxChunks)
        {
            throw new InvalidOperationException($"cannot add chunk '{tag}' version {version}: a bad or duplicate tag, a bad version, too many chunks, or the container is finished");
        }

        long offset = _out.Position;
        write(new SavedStateWriter(_out));
        _table.Add((tag, version, offset, _out.Position - offset));
    }

    public void Finish()
    {
        if (_finished)
        {
            return;
        }

        _finished = true;
        long tableOffset = _out.Position;
        var writer = new SavedStateWriter(_out);
        foreach ((string tag, int version, long offset, long length) in _table)
        {
            writer.WriteByte((byte)tag.Length);
            writer.WriteBytes(Encoding.ASCII.GetBytes(tag));
            writer.WriteInt32(version);
            writer.WriteInt64(offset);
            writer.WriteInt64(length);
        }

        int tableLength = checked((int)(_out.Position - tableOffset));
        writer.WriteInt64(tableOffset);
        writer.WriteInt32(_table.Count);
        writer.WriteInt32(tableLength);
        _out.WriteHash();
        _out.Flush();
    }

    /// <summary>Counts and hashes what passes through, for a destination that may not seek.</summary>
    private sealed class HashingStream(Stream inner) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private long _position;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _position;

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            inner.Write(buffer);
            _position += buffer.Length;
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void WriteByte(byte value) => Write([value]);

        public void WriteHash()
        {
            byte[] hash = _hash.GetHashAndReset();
            inner.Write(hash);
            _position += hash.Length;
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _hash.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
