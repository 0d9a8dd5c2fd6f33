using HybridVmm.Hardware.SavedState;
using HybridVmm.Hypervisor.SynIc;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// Chunk "synic.vp{n}": one vCPU's enlightened state, its SynIC (SCONTROL, SIMP, SIEFP, the SINTx MSRs and the
/// messages queued per SINT, TLFS 11) and whether it waits in HLT. Counts are bounded by the SynIC's own limits.
/// Version 2 adds the synthetic timers (TLFS 12): a count (0 when none was in use, or 4), then per timer CONFIG, COUNT,
/// the next expiration (u64 reference time, all ones for none), the expiration being signalled, and whether its
/// message waits for a slot. Version 3 adds, per timer, when its next expiration is signalled (u64 reference time, all
/// ones for none): later than the expiration while a timer that is not lazy catches up (TLFS chapter 12, "Periodic Timers"). Versions 1 (no
/// timers) and 2 (timers signalled at their expiration) are still read.
/// </summary>
public sealed class SynicStateCodec : StateCodec<VpEnlightenedState>
{
    public static readonly SynicStateCodec Instance = new();

    public override string StateName => "SynIC";

    public override int Version => 3;

    public override bool CanRead(int version) => version is 1 or 2 or 3;

    public static string Tag(int vpIndex) => $"synic.vp{vpIndex}";

    public override void Write(SavedStateWriter w, VpEnlightenedState vp)
    {
        w.WriteBoolean(vp.Halted);
        SynicState synic = vp.Synic;
        w.WriteUInt64(synic.SControl);
        w.WriteUInt64(synic.Simp);
        w.WriteUInt64(synic.Siefp);
        w.WriteCount(synic.Sints.Count);
        foreach (ulong sint in synic.Sints)
        {
            w.WriteUInt64(sint);
        }

        w.WriteCount(synic.Queued.Count);
        foreach (SynicQueuedMessage m in synic.Queued)
        {
            w.WriteInt32(m.Sint);
            w.WriteUInt32(m.MessageType);
            w.WriteUInt64(m.Sender);
            w.WriteBlob(m.Payload);
        }

        IReadOnlyList<SyntheticTimerState> timers = synic.Timers ?? [];
        w.WriteCount(timers.Count);
        foreach (SyntheticTimerState t in timers)
        {
            w.WriteUInt64(t.Config);
            w.WriteUInt64(t.Count);
            w.WriteUInt64(t.Deadline ?? ulong.MaxValue);
            w.WriteUInt64(t.ExpiredAt);
            w.WriteBoolean(t.Waiting);
            w.WriteUInt64(t.SignalAt ?? ulong.MaxValue);
        }
    }

    public override VpEnlightenedState Read(SavedStateReader r, int version)
    {
        bool halted = r.ReadBoolean();
        ulong scontrol = r.ReadUInt64(), simp = r.ReadUInt64(), siefp = r.ReadUInt64();
        var sints = new ulong[r.ReadCount(HvMessageLayout.SintCount, 8)];
        for (int s = 0; s < sints.Length; s++)
        {
            sints[s] = r.ReadUInt64();
        }

        var queued = new SynicQueuedMessage[r.ReadCount(HvMessageLayout.SintCount * HvMessageLayout.QueueLimit, 20)];
        for (int q = 0; q < queued.Length; q++)
        {
            int sint = r.ReadInt32();
            uint type = r.ReadUInt32();
            ulong sender = r.ReadUInt64();
            queued[q] = new SynicQueuedMessage(sint, type, r.ReadBlob(HvMessageLayout.MaxPayload), sender);
        }

        SyntheticTimerState[]? timers = null;
        if (version >= 2)
        {
            timers = new SyntheticTimerState[r.ReadCount(SyntheticTimers.Count, version >= 3 ? 41 : 33)];
            for (int t = 0; t < timers.Length; t++)
            {
                ulong config = r.ReadUInt64(), count = r.ReadUInt64(), deadline = r.ReadUInt64(), expired = r.ReadUInt64();
                bool waiting = r.ReadBoolean();
                ulong signal = version >= 3 ? r.ReadUInt64() : ulong.MaxValue;
                timers[t] = new SyntheticTimerState(config, count, deadline == ulong.MaxValue ? null : deadline, expired, waiting,
                    signal == ulong.MaxValue ? null : signal);
            }
        }

        return new VpEnlightenedState(halted, new SynicState(scontrol, simp, siefp, sints, queued, timers is { Length: > 0 } ? timers : null));
    }
}
