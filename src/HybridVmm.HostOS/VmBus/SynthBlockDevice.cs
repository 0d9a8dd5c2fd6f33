using System.Buffers.Binary;

namespace HybridVmm.HostOS.VmBus;

/// <summary>
/// Synthetic block storage backed by a disk-image file on the host. Request (guest to host, DATA packet, the
/// transaction ID is the request's tag): { u32 Op; u32 SectorCount; u64 Sector; write data }. Response
/// (COMPLETION packet, same transaction ID): { u32 Status; u32 SectorCount; u64 Value; read data }, where Value
/// is the capacity in sectors for GET_INFO. Sectors are 512 bytes; at most <see cref="MaxSectorsPerRequest"/>
/// per request. A FLUSH completes only after the image is durable on the host (fsync). A request outside the
/// disk gets <see cref="StatusOutOfRange"/> and touches nothing.
/// </summary>
public sealed class SynthBlockDevice : IVmBusDevice, IDisposable
{
    public static readonly Guid Interface = new("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f");

    public const uint OpRead = 1, OpWrite = 2, OpFlush = 3, OpGetInfo = 4;
    public const uint StatusOk = 0, StatusOutOfRange = 1, StatusBadRequest = 2, StatusIoError = 3;
    public const int SectorSize = 512;
    public const int MaxSectorsPerRequest = 8;
    private const int RequestHeader = 16;

    private readonly Storage.IDiskBackend _disk;

    public SynthBlockDevice(string imagePath)
        : this(new Storage.FileDisk(imagePath))
    {
    }

    /// <summary>A disk on any backend: a raw image file, or a copy-on-write overlay over a read-only base for clones.</summary>
    public SynthBlockDevice(Storage.IDiskBackend disk)
    {
        _disk = disk;
        CapacitySectors = disk.CapacitySectors;
    }

    public Storage.IDiskBackend Backend => _disk;

    public string Name => "synthblk";

    public Guid InterfaceId => Interface;

    public long CapacitySectors { get; }

    public long Flushes { get; private set; }

    public void Opened(VmBusChannel channel)
    {
    }

    public void Serve(VmBusChannel channel)
    {
        while (channel.Inbound!.HasRoomFor(RequestHeader + MaxSectorsPerRequest * SectorSize)
               && channel.Outbound!.TryRead(out PacketDescriptor d, out byte[] request, out _))
        {
            channel.Packets++;
            (uint status, uint count, ulong value, byte[] data, string what) = Execute(request);
            channel.Trace($"{what} -> {StatusName(status)}");
            byte[] response = new byte[RequestHeader + data.Length];
            BinaryPrimitives.WriteUInt32LittleEndian(response, status);
            BinaryPrimitives.WriteUInt32LittleEndian(response.AsSpan(4), count);
            BinaryPrimitives.WriteUInt64LittleEndian(response.AsSpan(8), value);
            data.CopyTo(response, RequestHeader);
            channel.Send(PacketDescriptor.Completion, 0, d.TransactionId, response);
        }
    }

    private (uint Status, uint Count, ulong Value, byte[] Data, string What) Execute(byte[] request)
    {
        if (request.Length < RequestHeader)
        {
            return (StatusBadRequest, 0, 0, Array.Empty<byte>(), $"short request ({request.Length} bytes)");
        }

        uint op = BinaryPrimitives.ReadUInt32LittleEndian(request);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(request.AsSpan(4));
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(request.AsSpan(8));
        bool inRange = count <= MaxSectorsPerRequest && sector <= (ulong)CapacitySectors && sector + count <= (ulong)CapacitySectors;
        try
        {
            switch (op)
            {
                case OpGetInfo:
                    return (StatusOk, 0, (ulong)CapacitySectors, Array.Empty<byte>(), $"get-info capacity={CapacitySectors}");
                case OpRead:
                    if (count == 0 || !inRange) return (count == 0 ? StatusBadRequest : StatusOutOfRange, 0, 0, Array.Empty<byte>(), $"read sector={sector} count={count}");
                    byte[] data = new byte[count * SectorSize];
                    _disk.Read((long)sector, data);
                    return (StatusOk, count, 0, data, $"read sector={sector} count={count}");
                case OpWrite:
                    if (count == 0 || !inRange) return (count == 0 ? StatusBadRequest : StatusOutOfRange, 0, 0, Array.Empty<byte>(), $"write sector={sector} count={count}");
                    if (request.Length < RequestHeader + count * SectorSize) return (StatusBadRequest, 0, 0, Array.Empty<byte>(), $"write sector={sector} count={count} (short data)");
                    _disk.Write((long)sector, request.AsSpan(RequestHeader, (int)count * SectorSize));
                    return (StatusOk, count, 0, Array.Empty<byte>(), $"write sector={sector} count={count}");
                case OpFlush:
                    _disk.Flush(); // fsync before the completion: the data is durable
                    Flushes++;
                    return (StatusOk, 0, 0, Array.Empty<byte>(), "flush (fsync)");
                default:
                    return (StatusBadRequest, 0, 0, Array.Empty<byte>(), $"unknown op {op}");
            }
        }
        catch (IOException e)
        {
            return (StatusIoError, 0, 0, Array.Empty<byte>(), $"op {op} host I/O error {e.GetType().Name}");
        }
    }

    private static string StatusName(uint status) => status switch
    {
        StatusOk => "ok",
        StatusOutOfRange => "out-of-range",
        StatusBadRequest => "bad-request",
        _ => "io-error",
    };

    public void Dispose() => _disk.Dispose();
}
