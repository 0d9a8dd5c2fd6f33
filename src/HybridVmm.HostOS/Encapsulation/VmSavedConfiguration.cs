using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>The VM's configuration as a snapshot keeps it: what the root needs to rebuild the partition and its worker.</summary>
public sealed record VmSavedConfiguration(
    string Name,
    uint MemoryBytes,
    string CommandLine,
    IReadOnlyList<string> Devices,
    IReadOnlyList<string> SyntheticDevices,
    string? DiskImage,
    long InstructionLimit);

/// <summary>
/// Chunk "partition", version 1: { string Name; u32 MemoryBytes; string CommandLine; i32 n, n × string Device;
/// i32 m, m × string SyntheticDevice; bool HasDisk; string DiskImage; i64 InstructionLimit }, strings as an i32
/// byte length and UTF-8.
/// </summary>
public sealed class VmSavedConfigurationCodec : StateCodec<VmSavedConfiguration>
{
    public const string Tag = "partition";
    public const int MaxString = 1 << 20;
    public const int MaxDevices = 64;

    public static readonly VmSavedConfigurationCodec Instance = new();

    public override string StateName => "partition configuration";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, VmSavedConfiguration c)
    {
        w.WriteString(c.Name);
        w.WriteUInt32(c.MemoryBytes);
        w.WriteString(c.CommandLine);
        WriteNames(w, c.Devices);
        WriteNames(w, c.SyntheticDevices);
        w.WriteBoolean(c.DiskImage is not null);
        w.WriteString(c.DiskImage ?? "");
        w.WriteInt64(c.InstructionLimit);
    }

    public override VmSavedConfiguration Read(SavedStateReader r, int version)
    {
        string name = r.ReadString(MaxString);
        uint memory = r.ReadUInt32();
        if (MemoryProblem(memory) is { } problem)
        {
            throw new SavedStateFormatException(problem);
        }

        string cmdline = r.ReadString(MaxString);
        string[] devices = ReadNames(r);
        string[] synthetic = ReadNames(r);
        bool hasDisk = r.ReadBoolean();
        string disk = r.ReadString(MaxString);
        return new VmSavedConfiguration(name, memory, cmdline, devices, synthetic, hasDisk ? disk : null, r.ReadInt64());
    }

    /// <summary>
    /// Null when <paramref name="memory"/> is a guest RAM size this build can hold (whole 4 KiB pages, at most host
    /// memory's limit), else the reason: a crafted size must be refused before a partition is sized from it.
    /// </summary>
    public static string? MemoryProblem(uint memory) =>
        memory == 0 || memory % 4096 != 0 || memory > Hardware.Memory.HostPhysicalMemory.MaxBytes
            ? $"guest memory of {memory} bytes is not a whole number of 4 KiB pages between 4 KiB and {Hardware.Memory.HostPhysicalMemory.MaxBytes >> 20} MiB"
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
