using System.Buffers.Binary;
using System.Text;

namespace HybridVmm.Hardware.SavedState;

/// <summary>
/// Little-endian primitives for a codec, written straight to a stream (a file, a socket buffer or a chunk of a
/// container), so a large state such as guest memory never has to be built in memory first.
/// </summary>
public sealed class SavedStateWriter(Stream stream)
{
    public void WriteByte(byte value) => stream.WriteByte(value);

    public void WriteBoolean(bool value) => stream.WriteByte(value ? (byte)1 : (byte)0);

    public void WriteUInt16(ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        stream.Write(b);
    }

    public void WriteInt32(int value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, value);
        stream.Write(b);
    }

    public void WriteUInt32(uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        stream.Write(b);
    }

    public void WriteInt64(long value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(b, value);
        stream.Write(b);
    }

    public void WriteUInt64(ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        stream.Write(b);
    }

    /// <summary>Raw bytes, no length: for fixed-size fields (a GUID, a page) or a payload's tail.</summary>
    public void WriteBytes(ReadOnlySpan<byte> bytes) => stream.Write(bytes);

    /// <summary>An i32 length, then the bytes (read back with <see cref="SavedStateReader.ReadBlob"/>).</summary>
    public void WriteBlob(ReadOnlySpan<byte> bytes)
    {
        WriteInt32(bytes.Length);
        stream.Write(bytes);
    }

    /// <summary>UTF-8 with an i32 byte length.</summary>
    public void WriteString(string value) => WriteBlob(Encoding.UTF8.GetBytes(value));

    /// <summary>An element count (read back with <see cref="SavedStateReader.ReadCount"/>, which bounds it).</summary>
    public void WriteCount(int count) => WriteInt32(count);
}
