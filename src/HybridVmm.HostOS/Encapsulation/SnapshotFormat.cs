using System.Security.Cryptography;
using System.Text;
using HybridVmm.Hardware.Cpu;
using HybridVmm.HostOS.VmBus;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// The snapshot file format (docs/scenarios.md): an 8-byte magic "HVMMSNAP", a little-endian u32 format
/// version, a u32 of zero, a u64 payload length and the SHA-256 of the payload, then the payload. The same
/// payload is what live migration sends for the final device and vCPU state.
/// </summary>
public static partial class SnapshotFormat
{
    /// <summary>2 added the interrupt state, the synthetic MSRs, SynIC, grants, event connections and VMBus channels.</summary>
    public const int Version = 2;
    private static readonly byte[] Magic = "HVMMSNAP"u8.ToArray();
    private const int HeaderSize = 8 + 4 + 4 + 8 + 32;
    private const int PageSize = 4096;

    public static byte[] Serialize(VmSnapshot snapshot)
    {
        byte[] payload = SerializePayload(snapshot);
        using var file = new MemoryStream(HeaderSize + payload.Length);
        using (var writer = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(Magic);
            writer.Write(Version);
            writer.Write(0);
            writer.Write((ulong)payload.Length);
            writer.Write(SHA256.HashData(payload));
            writer.Write(payload);
        }

        return file.ToArray();
    }

    /// <summary>Parses and verifies a snapshot; null and a one-line reason when it is corrupt, truncated or of another version.</summary>
    public static VmSnapshot? TryDeserialize(ReadOnlySpan<byte> file, out string error)
    {
        if (file.Length < HeaderSize)
        {
            error = $"snapshot is truncated: {file.Length} bytes, the header alone needs {HeaderSize}";
            return null;
        }

        if (!file[..8].SequenceEqual(Magic))
        {
            error = "not a HybridVmm snapshot (bad magic)";
            return null;
        }

        int version = BitConverter.ToInt32(file[8..]);
        if (version != Version)
        {
            error = $"snapshot format version {version} is not supported (this build reads version {Version})";
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
        catch (EndOfStreamException)
        {
            error = "snapshot payload does not have the layout of its format version although its checksum matches: it was written by a different build";
            return null;
        }
    }

    private static byte[] SerializePayload(VmSnapshot s)
    {
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(s.Name);
        w.Write(s.MemoryBytes);
        w.Write(s.CommandLine);
        WriteNames(w, s.Devices);
        WriteNames(w, s.SyntheticDevices);

        w.Write(s.DiskImage is not null);
        w.Write(s.DiskImage ?? "");
        w.Write(s.InstructionLimit);
        WriteCpu(w, s.Cpu);
        w.Write(s.VirtualTicks);
        w.Write(s.ChannelMessages);
        w.Write(s.Intercepts.Count);
        foreach ((string kind, long count) in s.Intercepts)
        {
            w.Write(kind);
            w.Write(count);
        }

        w.Write(s.DeviceStates.Count);
        foreach (DeviceState d in s.DeviceStates)
        {
            w.Write(d.Name);
            w.Write(d.State.Length);
            w.Write(d.State);
        }

        WriteEnlightened(w, s.Enlightened);
        WriteChannels(w, s.Channels);
        w.Write(s.Pages.Count);
        foreach (SavedPage page in s.Pages)
        {
            w.Write(page.PageNumber);
            w.Write(page.Bytes);
        }

        w.Flush();
        return stream.ToArray();
    }

    private static VmSnapshot? DeserializePayload(byte[] payload, out string error)
    {
        using var r = new BinaryReader(new MemoryStream(payload), Encoding.UTF8);
        string name = r.ReadString();
        uint memory = r.ReadUInt32();
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
            states.Add(new DeviceState(device, ReadBlob(r, 1 << 20)));
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
            DiskImage = hasDisk ? disk : null, InstructionLimit = limit, Cpu = cpu,
            VirtualTicks = ticks, ChannelMessages = messages, Intercepts = intercepts, DeviceStates = states,
            Enlightened = enlightened, Channels = channels, Pages = pages,
        };
    }

    /// <summary>A device list: a count, then each name.</summary>
    private static void WriteNames(BinaryWriter w, IReadOnlyList<string> names)
    {
        w.Write(names.Count);
        foreach (string name in names)
        {
            w.Write(name);
        }
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

    private static void WriteCpu(BinaryWriter w, in CpuState c)
    {
        foreach (uint v in new[] { c.Eax, c.Ecx, c.Edx, c.Ebx, c.Esp, c.Ebp, c.Esi, c.Edi, c.Eip, c.Eflags, c.Cr0, c.Cr2, c.Cr3, c.Cr4 })
        {
            w.Write(v);
        }

        foreach (ushort v in new[] { c.Cs, c.Ds, c.Es, c.Fs, c.Gs, c.Ss })
        {
            w.Write(v);
        }

        w.Write(c.Gdtr.Base);
        w.Write(c.Gdtr.Limit);
        w.Write(c.Idtr.Base);
        w.Write(c.Idtr.Limit);
        w.Write(c.TscOffset);
        w.Write(c.InstructionsRetired);
        w.Write(c.InterruptRequest0);
        w.Write(c.InterruptRequest1);
        w.Write(c.InterruptRequest2);
        w.Write(c.InterruptRequest3);
        w.Write(c.StiShadow);
        w.Write(c.ExceptionQueued);
        w.Write(c.QueuedVector);
        w.Write(c.QueuedErrorCode);
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
