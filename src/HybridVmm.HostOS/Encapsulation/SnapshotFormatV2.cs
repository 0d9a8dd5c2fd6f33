using System.Security.Cryptography;
using System.Text;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.VmBus;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// The legacy reader of snapshot format version 2 (the last hand-written one): an 8-byte magic "HVMMSNAP", a
/// little-endian u32 format version, a u32 of zero, a u64 payload length and the SHA-256 of the payload, then
/// one payload of every component's fields in a fixed order. This build no longer writes it; it reads it into
/// the same <see cref="VmSnapshot"/> as format version 3, with each device's bytes as that device's chunk of
/// version 1 (whose layout is the same bytes).
/// </summary>
internal static partial class SnapshotFormatV2
{
    public const int Version = 2;
    private static readonly byte[] Magic = "HVMMSNAP"u8.ToArray();
    private const int HeaderSize = 8 + 4 + 4 + 8 + 32;
    private const int PageSize = 4096;

    /// <summary>Parses and verifies a version-2 snapshot; null and a one-line reason when it is corrupt or truncated.</summary>
    public static VmSnapshot? TryDeserialize(ReadOnlySpan<byte> file, out string error)
    {
        if (file.Length < HeaderSize)
        {
            error = $"snapshot is truncated: {file.Length} bytes, the header alone needs {HeaderSize}";
            return null;
        }

        if (!file[..8].SequenceEqual(Magic) || BitConverter.ToInt32(file[8..]) != Version)
        {
            error = "not a HybridVmm snapshot of format version 2";
            return null;
        }

        ulong length = BitConverter.ToUInt64(file[16..]);
        if (length != (ulong)(file.Length - HeaderSize))
        {
            error = $"snapshot is truncated or padded: the header promises {length} payload bytes, the file holds {file.Length - HeaderSize}";
            return null;
        }

        ReadOnlySpan<byte> payload = file[HeaderSize..];
        if (!SHA256.HashData(payload).AsSpan().SequenceEqual(file.Slice(24, 32)))
        {
            error = "snapshot is corrupt: its SHA-256 checksum does not match its contents";
            return null;
        }

        try
        {
            return DeserializePayload(payload.ToArray(), out error);
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or FormatException or ArgumentException or DecoderFallbackException)
        {
            // BinaryReader's own refusals of a crafted length: past the end (EndOfStream), negative (IO), more than
            // 32 bits (Format), or bytes that are not UTF-8 (DecoderFallback, an ArgumentException).
            error = "snapshot payload does not have the layout of its format version although its checksum matches: it was written by a different build";
            return null;
        }
    }

    private static VmSnapshot? DeserializePayload(byte[] payload, out string error)
    {
        using var r = new BinaryReader(new MemoryStream(payload), new UTF8Encoding(false, throwOnInvalidBytes: true));
        string name = r.ReadString();
        uint memory = r.ReadUInt32();
        if (VmSavedConfigurationCodec.MemoryProblem(memory) is { } problem)
        {
            error = $"snapshot is malformed: {problem}";
            return null;
        }

        string cmdline = r.ReadString();
        string[] devices = ReadNames(r);
        string[] synthetic = ReadNames(r);

        bool hasDisk = r.ReadBoolean();
        string disk = r.ReadString();
        long limit = r.ReadInt64();
        CpuState cpu = ReadCpu(r);
        long ticks = r.ReadInt64();
        long messages = r.ReadInt64();
        var intercepts = new SortedDictionary<string, long>(StringComparer.Ordinal);
        int kinds = Count(r, 1024);
        for (int i = 0; i < kinds; i++)
        {
            intercepts[r.ReadString()] = r.ReadInt64();
        }

        var states = new List<DeviceState>();
        int deviceCount = Count(r, 64);
        for (int i = 0; i < deviceCount; i++)
        {
            string device = r.ReadString();
            states.Add(new DeviceState(device, new SavedStateChunk(DeviceState.Tag(device), 1, ReadBlob(r, 1 << 20))));
        }

        EnlightenedState enlightened = ReadEnlightened(r);
        ChannelState[] channels = ReadChannels(r);

        uint pageLimit = memory / PageSize;
        int pageCount = Count(r, (int)pageLimit);
        var pages = new List<SavedPage>(pageCount);
        for (int i = 0; i < pageCount; i++)
        {
            uint number = r.ReadUInt32();
            byte[] bytes = r.ReadBytes(PageSize);
            if (number >= pageLimit || bytes.Length != PageSize)
            {
                error = $"snapshot page {number} lies outside the VM's {memory / (1024 * 1024)} MiB";
                return null;
            }

            pages.Add(new SavedPage(number, bytes));
        }

        if (r.BaseStream.Position != payload.Length)
        {
            throw new EndOfStreamException(); // bytes left over: a layout this build does not know
        }

        error = "";
        return new VmSnapshot
        {
            Name = name, MemoryBytes = memory, CommandLine = cmdline, Devices = devices, SyntheticDevices = synthetic,
            Disk = hasDisk ? DiskReference.Legacy(disk) : null, InstructionLimit = limit, Cpu = cpu,
            VirtualTicks = ticks, ChannelMessages = messages, Intercepts = intercepts, DeviceStates = states,
            Enlightened = enlightened, Channels = channels, Memory = SavedMemory.Of(pages),
        };
    }

    private static string[] ReadNames(BinaryReader r)
    {
        var names = new string[Count(r, 64)];
        for (int i = 0; i < names.Length; i++)
        {
            names[i] = r.ReadString();
        }

        return names;
    }

    private static int Count(BinaryReader r, int max)
    {
        int n = r.ReadInt32();
        if (n < 0 || n > max)
        {
            throw new EndOfStreamException();
        }

        return n;
    }

    private static CpuState ReadCpu(BinaryReader r)
    {
        var c = new CpuState
        {
            Eax = r.ReadUInt32(), Ecx = r.ReadUInt32(), Edx = r.ReadUInt32(), Ebx = r.ReadUInt32(),
            Esp = r.ReadUInt32(), Ebp = r.ReadUInt32(), Esi = r.ReadUInt32(), Edi = r.ReadUInt32(),
            Eip = r.ReadUInt32(), Eflags = r.ReadUInt32(),
            Cr0 = r.ReadUInt32(), Cr2 = r.ReadUInt32(), Cr3 = r.ReadUInt32(), Cr4 = r.ReadUInt32(),
            Cs = r.ReadUInt16(), Ds = r.ReadUInt16(), Es = r.ReadUInt16(), Fs = r.ReadUInt16(), Gs = r.ReadUInt16(), Ss = r.ReadUInt16(),
        };
        c.Gdtr = new DescriptorTableRegister(r.ReadUInt32(), r.ReadUInt16());
        c.Idtr = new DescriptorTableRegister(r.ReadUInt32(), r.ReadUInt16());
        c.TscOffset = r.ReadUInt64();
        c.InstructionsRetired = r.ReadInt64();
        c.InterruptRequest0 = r.ReadUInt64();
        c.InterruptRequest1 = r.ReadUInt64();
        c.InterruptRequest2 = r.ReadUInt64();
        c.InterruptRequest3 = r.ReadUInt64();
        c.StiShadow = r.ReadBoolean();
        c.ExceptionQueued = r.ReadBoolean();
        c.QueuedVector = r.ReadByte();
        c.QueuedErrorCode = r.ReadUInt32();
        return c;
    }
}
