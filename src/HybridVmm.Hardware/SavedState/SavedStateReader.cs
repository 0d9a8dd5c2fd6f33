using System.Buffers.Binary;
using System.Text;

namespace HybridVmm.Hardware.SavedState;

/// <summary>
/// Reads a codec's fields from a stream that holds exactly <see cref="Remaining"/> bytes of one chunk.
/// Every declared length or count is checked against its limit and against the bytes that are left before
/// anything is allocated, so a crafted payload costs at most its own size. Any defect throws
/// <see cref="SavedStateFormatException"/>, which the codec turns into a refusal.
/// </summary>
public sealed class SavedStateReader
{
    private readonly Stream _stream;

    public SavedStateReader(Stream stream, long length)
    {
        _stream = stream;
        Remaining = length;
    }

    /// <summary>A reader over bytes already in memory.</summary>
    public SavedStateReader(byte[] payload) : this(new MemoryStream(payload, writable: false), payload.Length)
    {
    }

    public long Remaining { get; private set; }

    public byte ReadByte()
    {
        Span<byte> b = stackalloc byte[1];
        Fill(b);
        return b[0];
    }

    public bool ReadBoolean() => ReadByte() switch
    {
        0 => false,
        1 => true,
        byte other => throw new SavedStateFormatException($"a boolean holds {other}"),
    };

    public ushort ReadUInt16()
    {
        Span<byte> b = stackalloc byte[2];
        Fill(b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public int ReadInt32()
    {
        Span<byte> b = stackalloc byte[4];
        Fill(b);
        return BinaryPrimitives.ReadInt32LittleEndian(b);
    }

    public uint ReadUInt32()
    {
        Span<byte> b = stackalloc byte[4];
        Fill(b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public long ReadInt64()
    {
        Span<byte> b = stackalloc byte[8];
        Fill(b);
        return BinaryPrimitives.ReadInt64LittleEndian(b);
    }

    public ulong ReadUInt64()
    {
        Span<byte> b = stackalloc byte[8];
        Fill(b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>Exactly <paramref name="count"/> raw bytes (a fixed-size field).</summary>
    public byte[] ReadBytes(int count)
    {
        if (count < 0 || count > Remaining)
        {
            throw new SavedStateFormatException($"{count} bytes are declared, {Remaining} are left");
        }

        byte[] bytes = new byte[count];
        Fill(bytes);
        return bytes;
    }

    /// <summary>Fills <paramref name="destination"/> (for example a page buffer that is reused).</summary>
    public void ReadBytes(Span<byte> destination) => Fill(destination);

    /// <summary>Passes over <paramref name="count"/> bytes without reading them (a seekable stream: a page checked later).</summary>
    public void Skip(long count)
    {
        if (count < 0 || count > Remaining)
        {
            throw new SavedStateFormatException($"{count} bytes are declared, {Remaining} are left");
        }

        _stream.Seek(count, SeekOrigin.Current);
        Remaining -= count;
    }

    /// <summary>Every byte that is left, at most <paramref name="max"/>.</summary>
    public byte[] ReadRemaining(int max)
    {
        if (Remaining > max)
        {
            throw new SavedStateFormatException($"{Remaining} bytes are left, more than {max}");
        }

        return ReadBytes((int)Remaining);
    }

    /// <summary>An i32 length of at most <paramref name="max"/>, then that many bytes.</summary>
    public byte[] ReadBlob(int max) => ReadBytes(ReadCount(max, 1));

    /// <summary>A UTF-8 string of at most <paramref name="maxBytes"/> bytes.</summary>
    public string ReadString(int maxBytes)
    {
        byte[] bytes = ReadBlob(maxBytes);
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new SavedStateFormatException("a string is not valid UTF-8");
        }
    }

    /// <summary>
    /// An element count: at most <paramref name="max"/>, and no more than the bytes left can hold at
    /// <paramref name="minBytesPerElement"/> each, so the caller may allocate an array of that size.
    /// </summary>
    public int ReadCount(int max, int minBytesPerElement)
    {
        int n = ReadInt32();
        if (n < 0 || n > max)
        {
            throw new SavedStateFormatException($"a count of {n} is outside 0..{max}");
        }

        if ((long)n * minBytesPerElement > Remaining)
        {
            throw new SavedStateFormatException($"a count of {n} needs more bytes than the {Remaining} that are left");
        }

        return n;
    }

    /// <summary>A codec calls this last: bytes left over mean a layout this version does not have.</summary>
    public void EnsureEnd()
    {
        if (Remaining != 0)
        {
            throw new SavedStateFormatException($"{Remaining} bytes are left over");
        }
    }

    private void Fill(Span<byte> destination)
    {
        if (destination.Length > Remaining)
        {
            throw new SavedStateFormatException($"it ends early: {destination.Length} more bytes are needed, {Remaining} are left");
        }

        try
        {
            _stream.ReadExactly(destination);
        }
        catch (EndOfStreamException)
        {
            throw new SavedStateFormatException("the underlying file or stream ends early");
        }

        Remaining -= destination.Length;
    }
}
