using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The PC's 8254 programmable interval timer (ports 0x40-0x43) on the VM's virtual time at 1.193182 MHz, with port
/// 0x61's timer bits (channel 2's gate, the speaker data bit, OUT2 and the refresh toggle). Channel 0's OUT drives
/// IRQ 0 through a virtual-time timer armed for its next change, so a tick lands at the same guest instruction on every
/// run; channel 1 counts for nobody (DRAM refresh on old PCs) and channel 2 is read through port 0x61.
/// </summary>
/// <remarks>
/// The control word, counter latch and read-back commands, and the LSB, MSB and LSB-then-MSB access modes are the
/// data sheet's. A new count in mode 2 or 3 takes effect at once rather than at the end of the current period. The
/// power-on state is QEMU's PC after SeaBIOS (checked with the <c>pic</c> sample guest): channel 0 in mode 2 with
/// count 65536 (18.2 Hz), LSB then MSB, binary, counting since the VM started; channels 1 and 2 in mode 3 with count
/// 65536 and no access mode written; port 0x61 reads 0 in its low nibble (gate 2 low, speaker off).
/// </remarks>
public sealed class Pit8254 : IChipsetDevice, IPortIoDevice, ISaveRestore<PitState>
{
    public const ushort Channel0 = 0x40, Control = 0x43, PortB = 0x61;
    public const int Irq = 0;
    /// <summary>Port 0x61 bit 4 toggles every 15.085 µs on a PC (DRAM refresh); here on virtual time.</summary>
    private const long RefreshToggleTicks = 15_085;

    private readonly IDeviceClock _clock;
    private readonly IInterruptLine? _irq0;
    private readonly IVirtualTimer? _timer;
    private readonly Pit8254Channel[] _channels = [new(), new(), new()];
    private bool _speakerData;
    private bool _out0;
    private long _out0Since;

    public Pit8254(IDeviceClock clock, IInterruptLine? irq0 = null, Func<Action<long>, IVirtualTimer>? createTimer = null)
    {
        _clock = clock;
        _irq0 = irq0;
        _timer = irq0 is null ? null : createTimer?.Invoke(OnTimer);
        PowerOn(_channels[0], mode: 2, access: 3, gate: true);
        PowerOn(_channels[1], mode: 3, access: 0, gate: true);
        PowerOn(_channels[2], mode: 3, access: 0, gate: false);
        UpdateIrq0();
    }

    private void PowerOn(Pit8254Channel c, byte mode, byte access, bool gate)
    {
        c.Mode = mode;
        c.Access = access;
        c.Count = 0x10000;
        c.CountWritten = true;
        c.Gate = gate;
        c.Start(0);
    }

    public string Name => "pit";

    public IReadOnlyList<PortRange> Ports { get; } = new[] { new PortRange(Channel0, Control), new PortRange(PortB, PortB) };

    public IPortIoDevice PortIo => this;

    /// <summary>Channel 0's OUT now (IRQ 0's level).</summary>
    public bool Out0 => _channels[0].Out(_clock.Now);

    public IoResult Read(ushort port, int size)
    {
        uint value = ReadByte(port);
        for (int i = 1; i < size; i++)
        {
            value |= (uint)(port + i <= Control && port + i >= Channel0 ? ReadByte((ushort)(port + i)) : 0xFF) << (8 * i);
        }

        return IoResult.Ok(value);
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        for (int i = 0; i < size; i++)
        {
            if (port + i == PortB || (port + i >= Channel0 && port + i <= Control))
            {
                WriteByte((ushort)(port + i), (byte)(value >> (8 * i)));
            }
        }

        return IoResult.Ok();
    }

    private byte ReadByte(ushort port)
    {
        long now = _clock.Now;
        if (port == PortB)
        {
            Pit8254Channel c2 = _channels[2];
            int refresh = (int)(now / RefreshToggleTicks & 1);
            return (byte)((c2.Gate ? 1 : 0) | (_speakerData ? 2 : 0) | (refresh << 4) | (c2.Out(now) ? 0x20 : 0));
        }

        if (port == Control)
        {
            return 0xFF; // the control register is write-only
        }

        Pit8254Channel c = _channels[port - Channel0];
        if (c.StatusLatch is { } status)
        {
            c.StatusLatch = null;
            return status;
        }

        if (c.Latched is { } latched)
        {
            byte b;
            if (c.Access == 3)
            {
                b = c.LatchMsbNext ? (byte)(latched >> 8) : (byte)latched;
                c.LatchMsbNext = !c.LatchMsbNext;
                if (!c.LatchMsbNext)
                {
                    c.Latched = null;
                }
            }
            else
            {
                b = c.Access == 2 ? (byte)(latched >> 8) : (byte)latched;
                c.Latched = null;
            }

            return b;
        }

        int count = c.CurrentCount(now);
        switch (c.Access)
        {
            case 2:
                return (byte)(count >> 8);
            case 3:
                bool msb = c.ReadMsbNext;
                c.ReadMsbNext = !msb;
                return msb ? (byte)(count >> 8) : (byte)count;
            default:
                return (byte)count;
        }
    }

    private void WriteByte(ushort port, byte value)
    {
        long now = _clock.Now;
        if (port == PortB)
        {
            _speakerData = (value & 2) != 0;
            _channels[2].SetGate((value & 1) != 0, now);
            return;
        }

        if (port == Control)
        {
            WriteControl(value, now);
        }
        else
        {
            WriteCount(_channels[port - Channel0], value, now);
        }

        UpdateIrq0();
    }

    private void WriteControl(byte value, long now)
    {
        int select = value >> 6;
        if (select == 3)
        {
            // Read-back: bit 5 clear latches the counts, bit 4 clear the statuses, of the counters bits 1-3 select.
            for (int i = 0; i < 3; i++)
            {
                if ((value & (2 << i)) == 0)
                {
                    continue;
                }

                Pit8254Channel rc = _channels[i];
                if ((value & 0x10) == 0 && rc.StatusLatch is null)
                {
                    rc.StatusLatch = rc.Status(now);
                }

                if ((value & 0x20) == 0 && rc.Latched is null)
                {
                    rc.Latched = rc.CurrentCount(now);
                    rc.LatchMsbNext = false;
                }
            }

            return;
        }

        Pit8254Channel c = _channels[select];
        int access = (value >> 4) & 3;
        if (access == 0)
        {
            // Counter latch command: a second one before the latch is read is ignored.
            if (c.Latched is null)
            {
                c.Latched = c.CurrentCount(now);
                c.LatchMsbNext = false;
            }

            return;
        }

        int mode = (value >> 1) & 7;
        c.Mode = (byte)(mode >= 6 ? mode - 4 : mode);
        c.Access = (byte)access;
        c.Bcd = (value & 1) != 0;
        c.CountWritten = false;
        c.Armed = false;
        c.Paused = false;
        c.WriteMsbNext = c.ReadMsbNext = c.LatchMsbNext = false;
        c.Latched = null;
        c.StatusLatch = null;
    }

    private static void WriteCount(Pit8254Channel c, byte value, long now)
    {
        int raw;
        switch (c.Access)
        {
            case 2:
                raw = value << 8;
                break;
            case 3 when !c.WriteMsbNext:
                c.WriteLsb = value;
                c.WriteMsbNext = true;
                if (c.Mode == 0)
                {
                    c.Armed = false; // writing the first byte stops a mode 0 count (OUT goes low)
                }

                return;
            case 3:
                c.WriteMsbNext = false;
                raw = c.WriteLsb | (value << 8);
                break;
            default:
                raw = value;
                break;
        }

        c.Count = raw == 0 ? (c.Bcd ? 10_000 : 0x10000) : c.Bcd ? FromBcd(raw) : raw;
        c.CountWritten = true;
        if (c.Mode is 1 or 5)
        {
            c.Armed = false; // waits for a rising edge of the gate
        }
        else
        {
            c.Start(now);
        }
    }

    private static int FromBcd(int raw)
    {
        int value = 0;
        for (int shift = 12; shift >= 0; shift -= 4)
        {
            value = value * 10 + Math.Min((raw >> shift) & 0xF, 9);
        }

        return value == 0 ? 10_000 : value;
    }

    private void OnTimer(long now) => UpdateIrq0();

    /// <summary>
    /// Drives IRQ 0 with channel 0's OUT and arms the timer for its next change. A change that an intercept's cost
    /// jumped over (a mode 2 pulse is one 838 ns clock) is still seen as an edge: the line falls and rises again.
    /// </summary>
    private void UpdateIrq0()
    {
        if (_irq0 is null)
        {
            return;
        }

        long now = _clock.Now;
        Pit8254Channel c0 = _channels[0];
        bool outNow = c0.Out(now);
        bool missedRise = false;
        long t = Math.Min(_out0Since, now);
        for (int i = 0; i < 4 && c0.NextOutChange(t) is { } change && change < now; i++)
        {
            missedRise |= c0.Out(change);
            t = change;
        }

        if (missedRise && outNow && _out0)
        {
            _irq0.Lower();
        }

        _out0 = outNow;
        _out0Since = now;
        if (outNow)
        {
            _irq0.Raise();
        }
        else
        {
            _irq0.Lower();
        }

        if (_timer is not null)
        {
            if (c0.NextOutChange(now) is { } next)
            {
                _timer.ArmAt(Math.Max(next, now + 1));
            }
            else
            {
                _timer.Cancel();
            }
        }
    }

    public StateCodec<PitState> StateCodec => PitStateCodec.Instance;

    public PitState Save() => new(_channels.Select(c => new PitChannelState(c.Mode, c.Access, c.Bcd, c.Count, c.CountWritten, c.Gate, c.Armed,
        c.StartTime, c.FrozenClocks, c.Paused, c.WriteMsbNext, c.ReadMsbNext, c.LatchMsbNext, c.WriteLsb, c.Latched ?? -1, c.StatusLatch ?? -1)).ToArray(),
        _speakerData, _out0, _out0Since);

    public bool Restore(PitState state)
    {
        if (state.Channels.Length != 3)
        {
            return false;
        }

        for (int i = 0; i < 3; i++)
        {
            PitChannelState s = state.Channels[i];
            Pit8254Channel c = _channels[i];
            c.Mode = (byte)(s.Mode % 6);
            c.Access = (byte)(s.Access & 3);
            c.Bcd = s.Bcd;
            c.Count = Math.Clamp(s.Count, 1, 0x10000);
            (c.CountWritten, c.Gate, c.Armed, c.StartTime, c.FrozenClocks, c.Paused) = (s.CountWritten, s.Gate, s.Armed, s.StartTime, s.FrozenClocks, s.Paused);
            (c.WriteMsbNext, c.ReadMsbNext, c.LatchMsbNext, c.WriteLsb) = (s.WriteMsbNext, s.ReadMsbNext, s.LatchMsbNext, s.WriteLsb);
            c.Latched = s.Latched is >= 0 and <= 0xFFFF ? s.Latched : null;
            c.StatusLatch = s.StatusLatch is >= 0 and <= 0xFF ? (byte)s.StatusLatch : null;
        }

        _speakerData = state.SpeakerData;
        _out0 = state.Out0;
        _out0Since = state.Out0Since;
        UpdateIrq0();
        return true;
    }
}

/// <summary>One counter's saved state; <see cref="Latched"/> and <see cref="StatusLatch"/> are -1 when nothing is latched.</summary>
public readonly record struct PitChannelState(byte Mode, byte Access, bool Bcd, int Count, bool CountWritten, bool Gate, bool Armed, long StartTime,
    long FrozenClocks, bool Paused, bool WriteMsbNext, bool ReadMsbNext, bool LatchMsbNext, byte WriteLsb, int Latched, int StatusLatch);

/// <summary>The PIT's saved state: three counters, port 0x61's speaker bit, and IRQ 0's level and since when.</summary>
public sealed record PitState(PitChannelState[] Channels, bool SpeakerData, bool Out0, long Out0Since);

/// <summary>
/// Chunk "device.pit", version 1: for each of the three counters mode, access, BCD (bytes), count (i32), count written,
/// gate, armed (booleans), start time, frozen clocks (i64), paused, write-MSB-next, read-MSB-next, latch-MSB-next
/// (booleans), the LSB written (byte), the latched count and status (i32, -1: none); then the speaker bit, IRQ 0's
/// level (booleans) and the time it was last updated (i64).
/// </summary>
public sealed class PitStateCodec : StateCodec<PitState>
{
    public static readonly PitStateCodec Instance = new();

    public override string StateName => "8254 PIT";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, PitState s)
    {
        foreach (PitChannelState c in s.Channels)
        {
            w.WriteBytes([c.Mode, c.Access]);
            w.WriteBoolean(c.Bcd);
            w.WriteInt32(c.Count);
            w.WriteBoolean(c.CountWritten);
            w.WriteBoolean(c.Gate);
            w.WriteBoolean(c.Armed);
            w.WriteInt64(c.StartTime);
            w.WriteInt64(c.FrozenClocks);
            w.WriteBoolean(c.Paused);
            w.WriteBoolean(c.WriteMsbNext);
            w.WriteBoolean(c.ReadMsbNext);
            w.WriteBoolean(c.LatchMsbNext);
            w.WriteByte(c.WriteLsb);
            w.WriteInt32(c.Latched);
            w.WriteInt32(c.StatusLatch);
        }

        w.WriteBoolean(s.SpeakerData);
        w.WriteBoolean(s.Out0);
        w.WriteInt64(s.Out0Since);
    }

    public override PitState Read(SavedStateReader r, int version)
    {
        var channels = new PitChannelState[3];
        for (int i = 0; i < 3; i++)
        {
            byte[] ma = r.ReadBytes(2);
            channels[i] = new PitChannelState(ma[0], ma[1], r.ReadBoolean(), r.ReadInt32(), r.ReadBoolean(), r.ReadBoolean(), r.ReadBoolean(),
                r.ReadInt64(), r.ReadInt64(), r.ReadBoolean(), r.ReadBoolean(), r.ReadBoolean(), r.ReadBoolean(), r.ReadByte(), r.ReadInt32(), r.ReadInt32());
        }

        return new PitState(channels, r.ReadBoolean(), r.ReadBoolean(), r.ReadInt64());
    }
}
