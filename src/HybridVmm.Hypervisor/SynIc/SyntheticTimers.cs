using System.Buffers.Binary;
using HybridVmm.Hypervisor.Hv1;

namespace HybridVmm.Hypervisor.SynIc;

/// <summary>
/// One virtual processor's four synthetic timers (TLFS chapter 12, "Timers"), on the partition reference time: the
/// guest's virtual time in 100 ns units (<see cref="ReferenceTime"/>), never the host's clock. Each timer has a CONFIG
/// register (Enable bit 0, Periodic 1, Lazy 2, AutoEnable 3, ApicVector 11:4, DirectMode 12, SINTx 19:16) and a COUNT
/// register: the absolute expiration time of a one-shot timer, the period of a periodic one. An expiration sends the
/// HvMessageTimerExpired message to the SINT's slot of this vCPU's message page, or, in direct mode, raises ApicVector on
/// the local APIC with no message. A message that finds its slot busy waits (the slot's MessagePending flag asks the
/// guest for an EOM) and the timer with it: it is sent at the guest's EOM. A periodic timer that missed expirations
/// meanwhile (or while its partition was paused) goes on as its Lazy bit says (TLFS chapter 12, "Periodic Timers"): a lazy
/// one skips them and counts on from its next period, as KVM treats every periodic timer; one that is not lazy catches
/// up by period modulation, signalling each missed expiration (with its own ExpirationTime) half a period after the one
/// before, until it is on time again, and skips only what is more than <see cref="MaxCatchUp"/> periods behind. The
/// scheduler stops the vCPU exactly at <see cref="NextDeadline"/>.
/// </summary>
internal sealed class SyntheticTimers
{
    public const int Count = 4;

    /// <summary>Virtual ticks (1 ns) per reference-time unit (100 ns).</summary>
    public const long TicksPerReferenceUnit = 100;

    /// <summary>HvMessageTimerExpired (TLFS 12.3): payload TimerIndex u32, Reserved u32, ExpirationTime u64, DeliveryTime u64.</summary>
    public const uint TimerExpiredMessageType = 0x8000_0010;
    public const int TimerMessagePayloadSize = 24;

    /// <summary>The most missed expirations a timer that is not lazy catches up with; older ones are skipped (the TLFS allows it).</summary>
    public const int MaxCatchUp = 16;

    private const ulong Enable = 1, Periodic = 1 << 1, Lazy = 1 << 2, AutoEnable = 1 << 3, DirectMode = 1 << 12;
    private const ulong ApicVectorMask = 0xFFUL << 4, SintMask = 0xFUL << 16;
    private const ulong Writable = Enable | Periodic | Lazy | AutoEnable | ApicVectorMask | DirectMode | SintMask;

    private readonly SyntheticInterruptController _synic;
    private readonly Apic.LocalApic _apic;
    private readonly Timer[] _timers = new Timer[Count];

    internal SyntheticTimers(SyntheticInterruptController synic, Apic.LocalApic apic)
    {
        _synic = synic;
        _apic = apic;
    }

    /// <summary>The partition reference counter (HV_X64_MSR_TIME_REF_COUNT) at guest time <paramref name="now"/> (ticks).</summary>
    public static ulong ReferenceTime(long now) => (ulong)Math.Max(now, 0) / TicksPerReferenceUnit;

    /// <summary>The guest time (ticks) of the earliest armed expiration; null when no timer waits for time.</summary>
    public long? NextDeadline { get; private set; }

    /// <summary>Whether any timer is enabled (or has an expiration waiting for its slot).</summary>
    public bool AnyActive
    {
        get
        {
            foreach (Timer t in _timers)
            {
                if ((t.Config & Enable) != 0 || t.Waiting) return true;
            }

            return false;
        }
    }

    internal static bool Owns(uint msr) => msr is >= HvMsr.Stimer0Config and <= HvMsr.Stimer3Count;

    public ulong Read(uint msr)
    {
        ref Timer t = ref _timers[(msr - HvMsr.Stimer0Config) / 2];
        return (msr & 1) == 0 ? t.Config : t.CountRegister;
    }

    /// <summary>Writes a CONFIG or COUNT register at guest time <paramref name="now"/>. False (#GP) for reserved bits.</summary>
    public bool Write(uint msr, ulong value, long now)
    {
        int index = (int)(msr - HvMsr.Stimer0Config) / 2;
        ref Timer t = ref _timers[index];
        if ((msr & 1) == 0)
        {
            if ((value & ~Writable) != 0) return false;
            // A message-mode timer with SINTx 0 cannot fire: setting Enable has no effect (TLFS 12.2, as KVM does).
            if ((value & DirectMode) == 0 && (value & SintMask) == 0) value &= ~Enable;
            t.Config = value;
        }
        else
        {
            t.CountRegister = value;
            // A count of 0 stops the timer; with AutoEnable a non-zero count enables it (TLFS 12.2).
            if (value == 0) t.Config &= ~Enable;
            else if ((t.Config & AutoEnable) != 0 && ((t.Config & DirectMode) != 0 || (t.Config & SintMask) != 0)) t.Config |= Enable;
        }

        // Either write restarts the timer: one waiting for its slot is dropped, a new expiration is armed.
        t.Waiting = false;
        Arm(ref t, now);
        Recompute();
        return true;
    }

    private static void Arm(ref Timer t, long now)
    {
        t.Deadline = null;
        t.SignalAt = null;
        if ((t.Config & Enable) == 0 || t.CountRegister == 0)
        {
            return;
        }

        ulong reference = ReferenceTime(now);
        ulong due = (t.Config & Periodic) != 0 ? reference + t.CountRegister : t.CountRegister;
        t.Deadline = due; // a one-shot time already past expires at once
        t.SignalAt = due;
    }

    /// <summary>The scheduler reached <see cref="NextDeadline"/>: every timer due by <paramref name="now"/> expires.</summary>
    public void Expire(long now)
    {
        ulong reference = ReferenceTime(now);
        for (int i = 0; i < Count; i++)
        {
            ref Timer t = ref _timers[i];
            if (t.Deadline is { } due && t.SignalAt is { } signal && signal <= reference && !t.Waiting)
            {
                t.ExpiredAt = due;
                t.Deadline = null;
                t.SignalAt = null;
                Deliver(i, ref t, now);
            }
        }

        Recompute();
    }

    /// <summary>The guest wrote EOM (a slot may be free): expirations waiting for their slot try again.</summary>
    public void RetryWaiting(long now)
    {
        bool any = false;
        for (int i = 0; i < Count; i++)
        {
            ref Timer t = ref _timers[i];
            if (t.Waiting)
            {
                t.Waiting = false;
                Deliver(i, ref t, now);
                any = true;
            }
        }

        if (any) Recompute();
    }

    private void Deliver(int index, ref Timer t, long now)
    {
        ulong reference = ReferenceTime(now);
        bool delivered;
        if ((t.Config & DirectMode) != 0)
        {
            // Direct mode (TLFS 12.2.1): the APIC vector, as a fixed interrupt the guest ends with the APIC's EOI.
            _apic.Accept((byte)((t.Config & ApicVectorMask) >> 4));
            delivered = true;
        }
        else
        {
            Span<byte> payload = stackalloc byte[TimerMessagePayloadSize];
            BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)index);
            BinaryPrimitives.WriteUInt64LittleEndian(payload[8..], t.ExpiredAt);
            BinaryPrimitives.WriteUInt64LittleEndian(payload[16..], reference);
            delivered = _synic.TryDeliverNow((int)((t.Config & SintMask) >> 16), TimerExpiredMessageType, payload);
        }

        if (!delivered)
        {
            t.Waiting = true;
            return;
        }

        if ((t.Config & Periodic) == 0)
        {
            t.Config &= ~Enable; // a one-shot timer disables itself once it has signalled
            return;
        }

        // The next period after the one that expired. Missed while the message waited (or the partition was paused):
        // a lazy timer skips those periods; one that is not lazy signals each of them, half a period apart, until it has
        // caught up (TLFS chapter 12, "Periodic Timers"), and skips only those more than MaxCatchUp periods behind.
        ulong period = t.CountRegister;
        ulong next = t.ExpiredAt + period;
        ulong signal = next;
        if ((t.Config & Lazy) != 0 ? next <= reference : next < reference)
        {
            ulong missed = (reference - t.ExpiredAt) / period; // expirations due by now after the one signalled
            if ((t.Config & Lazy) != 0)
            {
                next = reference + period - (reference - t.ExpiredAt) % period;
                signal = next;
            }
            else
            {
                if (missed > MaxCatchUp)
                {
                    next += (missed - MaxCatchUp) * period;
                }

                signal = reference + Math.Max(period / 2, 1);
            }
        }

        t.Deadline = next;
        t.SignalAt = signal;
    }

    private void Recompute()
    {
        ulong? earliest = null;
        foreach (Timer t in _timers)
        {
            if (t.SignalAt is { } due && !t.Waiting && (earliest is null || due < earliest))
            {
                earliest = due;
            }
        }

        NextDeadline = earliest is { } e ? (long)Math.Min(e, (ulong)(long.MaxValue / TicksPerReferenceUnit)) * TicksPerReferenceUnit : null;
    }

    /// <summary>The four timers for a snapshot.</summary>
    public IReadOnlyList<SyntheticTimerState> SaveState()
    {
        var states = new SyntheticTimerState[Count];
        for (int i = 0; i < Count; i++)
        {
            Timer t = _timers[i];
            states[i] = new SyntheticTimerState(t.Config, t.CountRegister, t.Deadline, t.ExpiredAt, t.Waiting, t.SignalAt);
        }

        return states;
    }

    /// <summary>Puts saved timers back. Null on success, otherwise why not.</summary>
    internal string? RestoreState(IReadOnlyList<SyntheticTimerState> states)
    {
        if (states.Count != Count) return $"saved state has {states.Count} synthetic timers, not {Count}";
        foreach (SyntheticTimerState s in states)
        {
            if ((s.Config & ~Writable) != 0) return $"synthetic timer config 0x{s.Config:x} has reserved bits set";
            if (s.SignalAt is { } at && s.Deadline is null)
            {
                return $"synthetic timer signals at {at} but has no expiration";
            }

            if (s.SignalAt is { } signal && signal < s.Deadline)
            {
                return $"synthetic timer signals at {signal}, before its expiration at {s.Deadline}";
            }
        }

        for (int i = 0; i < Count; i++)
        {
            SyntheticTimerState s = states[i];
            // Saved before catch-up (synic.vp{n} version 2): a timer signals at its expiration.
            _timers[i] = new Timer
            {
                Config = s.Config, CountRegister = s.Count, Deadline = s.Deadline, ExpiredAt = s.ExpiredAt, Waiting = s.Waiting,
                SignalAt = s.Deadline is null ? null : s.SignalAt ?? s.Deadline,
            };
        }

        Recompute();
        return null;
    }

    private struct Timer
    {
        public ulong Config;
        public ulong CountRegister;
        /// <summary>Reference time of the next expiration; null when not armed.</summary>
        public ulong? Deadline;
        /// <summary>Reference time at which that expiration is signalled: itself, or later while a timer that is not lazy catches up.</summary>
        public ulong? SignalAt;
        /// <summary>Reference time of the expiration being signalled (the message's ExpirationTime).</summary>
        public ulong ExpiredAt;
        /// <summary>Expired, its message waiting for the slot (retried at EOM).</summary>
        public bool Waiting;
    }
}

/// <summary>
/// One synthetic timer for a snapshot: its registers, its next expiration (reference time), whether its message waits for
/// a slot, and when that next expiration is signalled (later than it while a timer that is not lazy catches up; null: at it).
/// </summary>
public sealed record SyntheticTimerState(ulong Config, ulong Count, ulong? Deadline, ulong ExpiredAt, bool Waiting, ulong? SignalAt = null);
