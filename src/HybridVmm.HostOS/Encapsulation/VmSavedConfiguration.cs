using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Storage;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>The VM's configuration as a snapshot keeps it: what the root needs to rebuild the partition and its worker.</summary>
public sealed record VmSavedConfiguration(
    string Name,
    ulong MemoryBytes,
    string CommandLine,
    IReadOnlyList<string> Devices,
    IReadOnlyList<string> SyntheticDevices,
    DiskReference? Disk,
    long InstructionLimit);

/// <summary>
/// Chunk "partition", version 3: { string Name; u64 MemoryBytes; string CommandLine; i32 n, n × string Device;
/// i32 m, m × string SyntheticDevice; bool HasDisk; string DiskName; when HasDisk: i64 DiskBytes (-1 when not
/// known) and 32 bytes DiskSha256 (all zero when not taken); i64 InstructionLimit }, strings as an i32 byte length
/// and UTF-8. (A VM without a disk has the same bytes as in version 1: a snapshot's size does not change.) The disk is a
/// <see cref="DiskReference"/>: a name for messages and an identity, never a path the host would open.
/// Version 1 held the disk's host path (bool HasDisk; string DiskImage) where version 2 holds the reference; it is
/// still read, keeping only the path's file name (issue 14, defect 4: a snapshot must not choose a host file).
/// Versions 1 and 2 held MemoryBytes as a u32 (at most 3583 MiB then); version 3 holds a u64, since a guest of 4 GiB
/// no longer fits. Versions 1 and 2 are still read.
/// </summary>
public sealed class VmSavedConfigurationCodec : StateCodec<VmSavedConfiguration>
{
    public const string Tag = "partition";
    public const int MaxString = 1 << 20;
    public const int MaxDevices = 64;

    public static readonly VmSavedConfigurationCodec Instance = new();

    public override string StateName => "partition configuration";

    public override int Version => 3;

    public override bool CanRead(int version) => version is 1 or 2 or 3;

    public override void Write(SavedStateWriter w, VmSavedConfiguration c)
    {
        w.WriteString(c.Name);
        w.WriteUInt64(c.MemoryBytes);
        w.WriteString(c.CommandLine);
        WriteNames(w, c.Devices);
        WriteNames(w, c.SyntheticDevices);
        w.WriteBoolean(c.Disk is not null);
        w.WriteString(c.Disk?.Name ?? "");
        if (c.Disk is { } disk)
        {
            w.WriteInt64(disk.Bytes ?? -1);
            w.WriteBytes(disk.Sha256 is { } hash ? Convert.FromHexString(hash) : new byte[32]);
        }

        w.WriteInt64(c.InstructionLimit);
    }

    public override VmSavedConfiguration Read(SavedStateReader r, int version)
    {
        string name = r.ReadString(MaxString);
        ulong memory = version >= 3 ? r.ReadUInt64() : r.ReadUInt32();
        if (MemoryProblem(memory) is { } problem)
        {
            throw new SavedStateFormatException(problem);
        }

        string cmdline = r.ReadString(MaxString);
        string[] devices = ReadNames(r);
        string[] synthetic = ReadNames(r);
        bool hasDisk = r.ReadBoolean();
        string diskName = r.ReadString(MaxString);
        DiskReference? disk = !hasDisk ? null : version == 1 ? DiskReference.Legacy(diskName) : ReadDisk(r, diskName);
        return new VmSavedConfiguration(name, memory, cmdline, devices, synthetic, disk, r.ReadInt64());
    }

    private static DiskReference ReadDisk(SavedStateReader r, string name)
    {
        long bytes = r.ReadInt64();
        byte[] hash = r.ReadBytes(32);
        if (bytes < -1 || (bytes > 0 && bytes % 512 != 0))
        {
            throw new SavedStateFormatException($"a disk of {bytes} bytes is not a whole number of 512-byte sectors");
        }

        return new DiskReference(
            DiskReference.Legacy(name).Name, bytes < 0 ? null : bytes,
            hash.AsSpan().IndexOfAnyExcept((byte)0) < 0 ? null : Convert.ToHexStringLower(hash));
    }

    /// <summary>
    /// Null when <paramref name="memory"/> is a guest RAM size this build can hold (whole 4 KiB pages, at most
    /// <see cref="Hardware.Memory.GuestRam.MaxBytes"/>), else the reason: a crafted size must be refused before a partition is sized from it.
    /// </summary>
    public static string? MemoryProblem(ulong memory) =>
        memory == 0 || memory % 4096 != 0 || memory > Hardware.Memory.GuestRam.MaxBytes
            ? $"guest memory of {memory} bytes is not a whole number of 4 KiB pages between 4 KiB and {Hardware.Memory.GuestRam.MaxBytes >> 20} MiB"
            : null;

    private static void WriteNames(SavedStateWriter w, IReadOnlyList<string> names)
    {
        w.WriteCount(names.Count);
        foreach (string name in names)
        {
            w.WriteString(name);
        }
    }

    private static string[] ReadNames(SavedStateReader r)
    {
        var names = new string[r.ReadCount(MaxDevices, 4)];
        for (int i = 0; i < names.Length; i++)
        {
            names[i] = r.ReadString(MaxString);
        }

        return names;
    }
}
