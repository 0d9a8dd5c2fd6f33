using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// The serial console's backlog as serve keeps it (docs/serve.md): the last bytes the guest wrote to its console, at most
/// <see cref="MaxBytes"/>, and how many it has written in all. It is the host's record of the guest's output, not guest
/// state; a snapshot or a migration carries it so that a console attached after a restore or on the migration's target
/// replays what the guest wrote before, as a framebuffer shows the screen after a Hyper-V live migration.
/// </summary>
public sealed record ConsoleBacklog(byte[] Bytes, long Total);

/// <summary>Chunk "console", version 1: { i64 total bytes written; blob the last bytes }. Optional: only serve writes it.</summary>
public sealed class ConsoleBacklogCodec : StateCodec<ConsoleBacklog>
{
    public const string Tag = "console";

    /// <summary>The most a backlog holds: serve's ring buffer is 64 KiB.</summary>
    public const int MaxBytes = 1 << 20;

    public static readonly ConsoleBacklogCodec Instance = new();

    public override string StateName => "console";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, ConsoleBacklog backlog)
    {
        w.WriteInt64(backlog.Total);
        w.WriteBlob(backlog.Bytes);
    }

    public override ConsoleBacklog Read(SavedStateReader r, int version)
    {
        long total = r.ReadInt64();
        byte[] bytes = r.ReadBlob(MaxBytes);
        if (total < bytes.Length)
        {
            throw new SavedStateFormatException($"a console backlog of {bytes.Length} bytes out of {total} written");
        }

        return new ConsoleBacklog(bytes, total);
    }
}
