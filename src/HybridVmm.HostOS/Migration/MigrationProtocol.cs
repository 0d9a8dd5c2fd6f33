using System.Buffers.Binary;
using System.Text;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.HostOS.Migration;

/// <summary>
/// The live-migration wire format (docs/scenarios.md): frames of a one-byte type, a little-endian u32 length
/// and the payload. First the <see cref="MigrationHandshake"/> (target: Challenge; source: Response; target: Proof),
/// then source to target: Hello, Pages (one per pre-copy round), Final (the snapshot container, the same
/// per-component chunks a snapshot file holds, with the last dirty pages as its memory chunk); target to source:
/// Resumed once the VM is restored there, or Failed with a reason; then source to target Commit, after which
/// only the target runs the VM (a source that timed out resumes its own copy and never commits, so the target
/// discards its copy: never two running copies).
/// </summary>
public static class MigrationProtocol
{
    /// <summary>4: the Hello's guest memory is a u64 and the Final frame's partition chunk is version 3 (guests of 4 GiB);
    /// 3: the authenticated handshake comes first, and the Final frame refers to a disk by identity (partition chunk
    /// version 2); 2 had neither; 1 sent a format-2 payload as Final. Both ends must speak the same version.</summary>
    public const int Version = 4;
    public const int MaxFrameBytes = 64 << 20;

    public enum FrameType : byte
    {
        Hello = 1,
        Pages = 2,
        Final = 3,
        Resumed = 4,
        Failed = 5,
        Challenge = 6,
        Response = 7,
        Proof = 8,

        /// <summary>Source to target, after Resumed: the source has given the VM up, so the target may run it.</summary>
        Commit = 9,
    }

    public static async Task WriteFrameAsync(Stream stream, FrameType type, byte[] payload, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(FrameHeader(type, payload.Length), cancellationToken);
        await stream.WriteAsync(payload, cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    /// <summary>A frame's five header bytes: the type and the payload's length.</summary>
    public static byte[] FrameHeader(FrameType type, int length)
    {
        byte[] header = new byte[5];
        header[0] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(1), (uint)length);
        return header;
    }

    /// <summary>The largest Hello, Resumed, Failed or handshake frame: a name, a size, a one-line reason, nonces and a MAC.</summary>
    public const int MaxControlFrameBytes = 4096;

    /// <summary>The longest VM name a Hello carries, in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 1024;

    /// <summary>The most a frame of <paramref name="type"/> may hold: only page and final frames are large.</summary>
    public static int MaxPayloadBytes(FrameType type) => type is FrameType.Pages or FrameType.Final ? MaxFrameBytes : MaxControlFrameBytes;

    /// <summary>
    /// Reads one frame. Throws <see cref="IOException"/> (or <see cref="EndOfStreamException"/>) on a closed connection,
    /// <see cref="InvalidDataException"/> on a malformed frame: an unknown type, or more bytes than its type may hold,
    /// refused before the payload is allocated.
    /// </summary>
    public static async Task<(FrameType Type, byte[] Payload)> ReadFrameAsync(Stream stream, CancellationToken cancellationToken)
    {
        byte[] header = new byte[5];
        await stream.ReadExactlyAsync(header, cancellationToken);
        (FrameType type, int length) = ReadFrameHeader(header);
        byte[] payload = new byte[length];
        await stream.ReadExactlyAsync(payload, cancellationToken);
        return (type, payload);
    }

    /// <summary>
    /// A frame's type and payload length from its five header bytes; throws <see cref="InvalidDataException"/> on an
    /// unknown type, or more bytes than its type may hold, before anything is allocated.
    /// </summary>
    public static (FrameType Type, int Length) ReadFrameHeader(ReadOnlySpan<byte> header)
    {
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header[1..]);
        if (header[0] is < (byte)FrameType.Hello or > (byte)FrameType.Commit)
        {
            throw new InvalidDataException($"malformed migration frame (type {header[0]}, {length} bytes)");
        }

        if (length > MaxPayloadBytes((FrameType)header[0]))
        {
            throw new InvalidDataException($"malformed migration frame ({(FrameType)header[0]} of {length} bytes, at most {MaxPayloadBytes((FrameType)header[0])})");
        }

        return ((FrameType)header[0], (int)length);
    }

    /// <summary>A Failed frame's reason, cut to what a control frame holds so the peer never refuses the refusal.</summary>
    public static byte[] FailedPayload(string reason)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(reason);
        return bytes.Length <= MaxControlFrameBytes ? bytes : bytes[..MaxControlFrameBytes];
    }

    /// <summary>The longest reason from a peer's Failed frame that is repeated in a message, in characters.</summary>
    public const int MaxPeerTextLength = 512;

    /// <summary>
    /// A peer's Failed reason made safe to print on one line: invalid UTF-8 and control characters become '?' (a newline
    /// or an escape from the other host would forge a log line or drive the operator's terminal), cut to
    /// <see cref="MaxPeerTextLength"/> characters.
    /// </summary>
    public static string PeerText(byte[] payload)
    {
        string text = Encoding.UTF8.GetString(payload);
        text = text.Length > MaxPeerTextLength ? text[..MaxPeerTextLength] + "..." : text;
        return string.Create(text.Length, text, static (span, source) =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                span[i] = char.IsControl(source[i]) || source[i] is '\u2028' or '\u2029' ? '?' : source[i];
            }
        });
    }

    public static byte[] Hello(VmConfiguration config)
    {
        using var buffer = new MemoryStream();
        using var w = new BinaryWriter(buffer, Encoding.UTF8);
        w.Write(Version);
        w.Write(config.Name);
        w.Write((ulong)config.MemoryBytes); // u64: a guest of 4 GiB does not fit a u32
        w.Flush();
        return buffer.ToArray();
    }

    public static (int Version, string Name, ulong MemoryBytes) ReadHello(byte[] payload) =>
        TryReadHello(payload, out var hello, out string error) ? hello : throw new InvalidDataException(error);

    /// <summary>
    /// Parses a Hello (i32 version; the name as BinaryWriter writes a string: a 7-bit-encoded length and UTF-8; u64
    /// guest memory) with every length checked: false and "malformed Hello frame: ..." on any defect. A Hello of
    /// another protocol version is returned with its version alone, for the caller to refuse by name.
    /// </summary>
    public static bool TryReadHello(ReadOnlySpan<byte> payload, out (int Version, string Name, ulong MemoryBytes) hello, out string error)
    {
        hello = default;
        if (payload.Length < 4)
        {
            error = $"malformed Hello frame: {payload.Length} bytes, too short for the protocol version";
            return false;
        }

        int version = BinaryPrimitives.ReadInt32LittleEndian(payload);
        if (version != Version)
        {
            hello = (version, "", 0);
            error = "";
            return true;
        }

        int at = 4, length = 0;
        for (int shift = 0; ; shift += 7)
        {
            if (at == payload.Length)
            {
                error = "malformed Hello frame: it ends inside the name's length";
                return false;
            }

            byte b = payload[at++];
            if (shift == 28 && b > 0x07)
            {
                error = "malformed Hello frame: the name's length has more than 31 bits";
                return false;
            }

            length |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                break;
            }
        }

        if (length > MaxNameBytes || length > payload.Length - at)
        {
            error = $"malformed Hello frame: a name of {length} bytes (at most {MaxNameBytes}, and {payload.Length - at} are left)";
            return false;
        }

        string name;
        try
        {
            name = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(payload.Slice(at, length));
        }
        catch (DecoderFallbackException)
        {
            error = "malformed Hello frame: the name is not UTF-8";
            return false;
        }

        at += length;
        if (payload.Length - at != 8)
        {
            error = $"malformed Hello frame: {payload.Length - at} bytes follow the name, where the guest memory size takes 8";
            return false;
        }

        ulong memory = BinaryPrimitives.ReadUInt64LittleEndian(payload[at..]);
        if (VmNames.Problem(name) is { } badName)
        {
            error = $"malformed Hello frame: the VM name {badName}";
            return false;
        }

        if (VmSavedConfigurationCodec.MemoryProblem(memory) is { } problem)
        {
            error = $"malformed Hello frame: {problem}";
            return false;
        }

        hello = (version, name, memory);
        error = "";
        return true;
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

    /// <summary>
    /// The pages of a Pages frame, each checked against the guest's <paramref name="memoryBytes"/> (so the receiver
    /// holds at most one copy of the guest's RAM); <see cref="InvalidDataException"/> when the frame is malformed.
    /// </summary>
    public static List<SavedPage> ReadPages(byte[] payload, ulong memoryBytes)
    {
        int count = payload.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(payload) : -1;
        if (count < 0 || payload.Length != 4 + (long)count * (4 + 4096))
        {
            throw new InvalidDataException($"malformed page frame: {payload.Length} bytes do not hold the {count} pages it declares");
        }

        var pages = new List<SavedPage>(count);
        for (int i = 0, at = 4; i < count; i++, at += 4 + 4096)
        {
            uint number = BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(at));
            if (!Hardware.Memory.GuestRam.IsRamPage(memoryBytes, number))
            {
                throw new InvalidDataException($"malformed page frame: page {number} lies outside the VM's {memoryBytes >> 20} MiB");
            }

            pages.Add(new SavedPage(number, payload.AsSpan(at + 4, 4096).ToArray()));
        }

        return pages;
    }
}
