using System.Buffers.Binary;
using System.Text;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.HostOS.Migration;

/// <summary>
/// The live-migration wire format (docs/scenarios.md): frames of a one-byte type, a little-endian u32 length
/// and the payload. Source to target: Hello, Pages (one per pre-copy round), Final (the snapshot container,
/// the same per-component chunks a snapshot file holds, with the last dirty pages as its memory chunk); target
/// to source: Resumed once the VM runs there, or Failed with a reason.
/// </summary>
public static class MigrationProtocol
{
    /// <summary>2: the Final frame is a chunk container (snapshot format 3); 1 sent a format-2 payload.</summary>
    public const int Version = 2;
    public const int MaxFrameBytes = 64 << 20;

    public enum FrameType : byte
    {
        Hello = 1,
        Pages = 2,
        Final = 3,
        Resumed = 4,
        Failed = 5,
    }

    public static async Task WriteFrameAsync(Stream stream, FrameType type, byte[] payload, CancellationToken cancellationToken)
    {
        byte[] header = new byte[5];
        header[0] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(1), (uint)payload.Length);
        await stream.WriteAsync(header, cancellationToken);
        await stream.WriteAsync(payload, cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    /// <summary>Reads one frame; throws <see cref="IOException"/> on a closed connection or a malformed frame.</summary>
    public static async Task<(FrameType Type, byte[] Payload)> ReadFrameAsync(Stream stream, CancellationToken cancellationToken)
    {
        byte[] header = new byte[5];
        await stream.ReadExactlyAsync(header, cancellationToken);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(1));
        if (length > MaxFrameBytes || header[0] is < 1 or > 5)
        {
            throw new IOException($"malformed migration frame (type {header[0]}, {length} bytes)");
        }

        byte[] payload = new byte[length];
        await stream.ReadExactlyAsync(payload, cancellationToken);
        return ((FrameType)header[0], payload);
    }

    public static byte[] Hello(VmConfiguration config)
    {
        using var buffer = new MemoryStream();
        using var w = new BinaryWriter(buffer, Encoding.UTF8);
        w.Write(Version);
        w.Write(config.Name);
        w.Write(config.MemoryBytes);
        w.Flush();
        return buffer.ToArray();
    }

    public static (int Version, string Name, uint MemoryBytes) ReadHello(byte[] payload)
    {
        using var r = new BinaryReader(new MemoryStream(payload), Encoding.UTF8);
        return (r.ReadInt32(), r.ReadString(), r.ReadUInt32());
    }

    public static byte[] Pages(IReadOnlyList<SavedPage> pages)
    {
        byte[] payload = new byte[4 + pages.Count * (4 + 4096)];
        BinaryPrimitives.WriteInt32LittleEndian(payload, pages.Count);
        int at = 4;
        foreach (SavedPage page in pages)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(at), page.PageNumber);
            page.Bytes.CopyTo(payload, at + 4);
            at += 4 + 4096;
        }

        return payload;
    }

    public static IEnumerable<SavedPage> ReadPages(byte[] payload)
    {
        int count = BinaryPrimitives.ReadInt32LittleEndian(payload);
        if (count < 0 || payload.Length != 4 + (long)count * (4 + 4096))
        {
            throw new IOException("malformed page frame");
        }

        for (int i = 0, at = 4; i < count; i++, at += 4 + 4096)
        {
            yield return new SavedPage(BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(at)), payload.AsSpan(at + 4, 4096).ToArray());
        }
    }
}
