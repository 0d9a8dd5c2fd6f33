using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>The partition's counters a restored VM carries on: virtual time used, channel messages, intercepts by kind.</summary>
public sealed record SavedStatistics(long VirtualTicks, long ChannelMessages, IReadOnlyDictionary<string, long> Intercepts);

/// <summary>Chunk "statistics", version 1: { i64 VirtualTicks; i64 ChannelMessages; i32 n, n × { string Kind; i64 Count } }.</summary>
public sealed class SavedStatisticsCodec : StateCodec<SavedStatistics>
{
    public const string Tag = "statistics";
    public const int MaxKinds = 1024;
    public const int MaxKindLength = 256;

    public static readonly SavedStatisticsCodec Instance = new();

    public override string StateName => "statistics";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, SavedStatistics s)
    {
        w.WriteInt64(s.VirtualTicks);
        w.WriteInt64(s.ChannelMessages);
        w.WriteCount(s.Intercepts.Count);
        foreach ((string kind, long count) in s.Intercepts)
        {
            w.WriteString(kind);
            w.WriteInt64(count);
        }
    }

    public override SavedStatistics Read(SavedStateReader r, int version)
    {
        long ticks = r.ReadInt64();
        long messages = r.ReadInt64();
        var intercepts = new SortedDictionary<string, long>(StringComparer.Ordinal);
        int kinds = r.ReadCount(MaxKinds, 12);
        for (int i = 0; i < kinds; i++)
        {
            intercepts[r.ReadString(MaxKindLength)] = r.ReadInt64();
        }

        return new SavedStatistics(ticks, messages, intercepts);
    }
}
