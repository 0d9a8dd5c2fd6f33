using System.Buffers.Binary;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.VmBus;

/// <summary>The 16-byte packet descriptor at the start of every ring-buffer packet (VMBus vmpacket_descriptor).</summary>
public readonly record struct PacketDescriptor(ushort Type, ushort Flags, ulong TransactionId, int PayloadLength)
{
    /// <summary>VM_PKT_DATA_INBAND: data carried in the packet itself.</summary>
    public const ushort DataInband = 6;
    /// <summary>VM_PKT_COMP: the completion of an earlier packet, same transaction ID.</summary>
    public const ushort Completion = 11;
    /// <summary>Flags bit 0: the sender wants a completion.</summary>
    public const ushort CompletionRequested = 1;
    public const int Size = 16;
}

/// <summary>
/// One direction of a channel: a ring buffer in guest memory, inside a GPADL, reached only through the
/// kernel's grant-checked GPADL accessors. Page 0 is the control page (u32 WriteIndex at 0, u32 ReadIndex at 4,
/// u32 InterruptMask at 8); the data area follows. Indices are byte offsets into the data area; the ring is
/// empty when they are equal and a writer always leaves at least 8 bytes free, so full and empty differ.
/// Packets are a <see cref="PacketDescriptor"/> (u16 type, u16 offset8 = 2, u16 len8, u16 flags, u64
/// transaction ID) and the payload, padded to 8 bytes; a packet may wrap around the end of the data area.
/// </summary>
public sealed class RingBuffer
{
    private const int WriteIndexOffset = 0;
    private const int ReadIndexOffset = 4;
    private const int InterruptMaskOffset = 8;
    private const int PendingSendSizeOffset = 12;
    private readonly RootPartitionApi _api;
    private readonly PartitionHandle _partition;
    private readonly uint _gpadl;
    private readonly long _base;

    public RingBuffer(RootPartitionApi api, PartitionHandle partition, uint gpadl, long baseOffset, int pages)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pages, 2); // a control page and at least one data page
        _api = api;
        _partition = partition;
        _gpadl = gpadl;
        _base = baseOffset;
        DataSize = (uint)(pages - 1) * 4096;
    }

    public uint DataSize { get; }

    private long Data => _base + 4096;

    private uint ReadControl(int offset)
    {
        Span<byte> b = stackalloc byte[4];
        return _api.ReadGpadl(_partition, _gpadl, _base + offset, b) ? BinaryPrimitives.ReadUInt32LittleEndian(b) : uint.MaxValue;
    }

    private void WriteControl(int offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _api.WriteGpadl(_partition, _gpadl, _base + offset, b);
    }

    /// <summary>
    /// The writer found the ring full and set PendingSendSize (u32 at 12): once the reader has drained the ring,
    /// it clears the field and signals the writer. True when that signal is due.
    /// </summary>
    public bool TakeWriterWaiting()
    {
        if (ReadControl(PendingSendSizeOffset) is 0 or uint.MaxValue) return false;
        WriteControl(PendingSendSizeOffset, 0);
        return true;
    }

    /// <summary>The reader set InterruptMask: it polls, so the writer need not signal.</summary>
    public bool ReaderMasked => ReadControl(InterruptMaskOffset) != 0;

    private void CopyOut(uint index, Span<byte> destination)
    {
        int first = (int)Math.Min((uint)destination.Length, DataSize - index);
        _api.ReadGpadl(_partition, _gpadl, Data + index, destination[..first]);
        if (first < destination.Length) _api.ReadGpadl(_partition, _gpadl, Data, destination[first..]);
    }

    private void CopyIn(uint index, ReadOnlySpan<byte> source)
    {
        int first = (int)Math.Min((uint)source.Length, DataSize - index);
        _api.WriteGpadl(_partition, _gpadl, Data + index, source[..first]);
        if (first < source.Length) _api.WriteGpadl(_partition, _gpadl, Data, source[first..]);
    }

    /// <summary>
    /// Takes the next packet. False when the ring is empty. A malformed ring (indices out of range, a length that
    /// overruns the written data) is reported through <paramref name="malformed"/> and the ring is left alone.
    /// </summary>
    public bool TryRead(out PacketDescriptor descriptor, out byte[] payload, out bool malformed)
    {
        descriptor = default;
        payload = Array.Empty<byte>();
        malformed = false;
        uint write = ReadControl(WriteIndexOffset), read = ReadControl(ReadIndexOffset);
        if (write == read) return false;
        if (write >= DataSize || read >= DataSize || (read & 7) != 0 || (write & 7) != 0)
        {
            malformed = true;
            return false;
        }

        uint available = (write - read + DataSize) % DataSize;
        Span<byte> header = stackalloc byte[PacketDescriptor.Size];
        if (available < PacketDescriptor.Size)
        {
            malformed = true;
            return false;
        }

        CopyOut(read, header);
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(header);
        ushort offset8 = BinaryPrimitives.ReadUInt16LittleEndian(header[2..]);
        uint length = (uint)BinaryPrimitives.ReadUInt16LittleEndian(header[4..]) * 8;
        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
        ulong transaction = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        if (offset8 != 2 || length < PacketDescriptor.Size || length > available)
        {
            malformed = true;
            return false;
        }

        payload = new byte[length - PacketDescriptor.Size];
        CopyOut((read + PacketDescriptor.Size) % DataSize, payload);
        WriteControl(ReadIndexOffset, (read + length) % DataSize);
        descriptor = new PacketDescriptor(type, flags, transaction, payload.Length);
        return true;
    }

    /// <summary>Appends a packet; false (nothing written) when it does not fit.</summary>
    public bool TryWrite(ushort type, ushort flags, ulong transactionId, ReadOnlySpan<byte> payload)
    {
        uint write = ReadControl(WriteIndexOffset), read = ReadControl(ReadIndexOffset);
        if (write >= DataSize || read >= DataSize) return false;
        uint length = (uint)(PacketDescriptor.Size + ((payload.Length + 7) & ~7));
        uint used = (write - read + DataSize) % DataSize;
        if (length + 8 > DataSize - used || length / 8 > ushort.MaxValue) return false;

        byte[] packet = new byte[length];
        BinaryPrimitives.WriteUInt16LittleEndian(packet, type);
        BinaryPrimitives.WriteUInt16LittleEndian(packet.AsSpan(2), 2);
        BinaryPrimitives.WriteUInt16LittleEndian(packet.AsSpan(4), (ushort)(length / 8));
        BinaryPrimitives.WriteUInt16LittleEndian(packet.AsSpan(6), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(packet.AsSpan(8), transactionId);
        payload.CopyTo(packet.AsSpan(PacketDescriptor.Size));
        CopyIn(write, packet);
        WriteControl(WriteIndexOffset, (write + length) % DataSize);
        return true;
    }

    /// <summary>Bytes a packet with <paramref name="payloadLength"/> bytes would need to fit now.</summary>
    public bool HasRoomFor(int payloadLength)
    {
        uint write = ReadControl(WriteIndexOffset), read = ReadControl(ReadIndexOffset);
        if (write >= DataSize || read >= DataSize) return false;
        uint length = (uint)(PacketDescriptor.Size + ((payloadLength + 7) & ~7));
        return length + 8 <= DataSize - (write - read + DataSize) % DataSize;
    }
}
