using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The MC146818 real-time clock and its CMOS memory (index 0x70, data 0x71). The time is an epoch from the VM's
/// configuration advanced by the VM's virtual time, never the host's clock, so a guest reads the same date at the
/// same instruction on every run. Registers 0-9 and the century (0x32) read in BCD or binary (register B bit 2) and
/// 12- or 24-hour form (bit 1); writing them sets the clock; register B's SET bit (7) stops the clock while the
/// guest writes it. Register A's UIP bit (7) is set during the last 244 µs of each virtual second; register C
/// reports the update-ended, alarm and periodic flags since it was last read (computed when it is read) and clears
/// them, and when one whose interrupt register B enables happens, the clock raises IRQ 8 (on a virtual-time
/// timer, so at the same instruction every run) until the guest reads register C; register D always reports a
/// valid battery (0x80). The CMOS memory holds the sizes QEMU's PC puts there
/// (0x15/0x16 640 KiB of base memory, 0x17/0x18 and 0x30/0x31 the KiB above 1 MiB, 0x34/0x35 the 64 KiB units above
/// 16 MiB, 0x5F the processors less one, and the checksum of 0x10-0x2D at 0x2E/0x2F); every other byte holds what
/// the guest writes.
/// </summary>
/// <remarks>
/// IRQ 8 is the platform's interrupt line 8, the slave 8259's input 0 (see <see cref="DeviceServices.InterruptLine"/>).
/// Bit 7 of the index disables NMI on a PC; it is kept, since nothing raises NMIs yet.
/// </remarks>
public sealed partial class Mc146818Rtc : IChipsetDevice, IPortIoDevice, ISaveRestore<RtcState>
{
    public const ushort IndexPort = 0x70;
    public const ushort DataPort = 0x71;

    public const byte RegisterA = 0x0A, RegisterB = 0x0B, RegisterC = 0x0C, RegisterD = 0x0D, Century = 0x32;

    public const byte BSet = 0x80, BPeriodicEnable = 0x40, BAlarmEnable = 0x20, BUpdateEnable = 0x10, BBinary = 0x04, B24Hour = 0x02, BDaylightSaving = 0x01;
    public const byte CInterrupt = 0x80, CPeriodic = 0x40, CAlarm = 0x20, CUpdateEnded = 0x10;

    private const long TicksPerSecond = Hardware.Clock.VirtualClock.TicksPerSecond;
    /// <summary>The update cycle takes 1984 µs, and UIP rises 244 µs before it starts (MC146818A data sheet).</summary>
    private const long UpdateInProgressTicks = 244_000;

    public const int Irq = 8;

    private readonly IDeviceClock _clock;
    private readonly IInterruptLine? _irq;
    private readonly IVirtualTimer? _timer;
    private readonly byte[] _cmos = new byte[128];
    private byte _index;
    private bool _nmiDisabled;
    // The clock reads _baseSeconds (seconds since 0001-01-01) at virtual time _baseTime, and counts on from there.
    private long _baseSeconds;
    private long _baseTime;
    // While register B's SET bit is on, the clock stands at _frozenSeconds.
    private long _frozenSeconds;
    // Register C's flags cover the virtual time since _flagsCheckedAt.
    private long _flagsCheckedAt;

    /// <param name="clock">The VM's virtual time.</param>
    /// <param name="epoch">The date and time (UTC) the clock shows at virtual time 0.</param>
    /// <param name="ramBytes">The guest's RAM, for the CMOS memory-size bytes: as QEMU's pc_cmos_init fills them, 0x34/0x35
    /// count the RAM below 4 GiB above 16 MiB and 0x5B-0x5D the RAM above 4 GiB, in 64 KiB units.</param>
    /// <param name="processors">The guest's virtual processors (byte 0x5F holds one less).</param>
    /// <param name="irq">IRQ 8, or null for a clock that raises no interrupt.</param>
    /// <param name="createTimer">Creates the virtual-time timer that raises the interrupts (with <paramref name="irq"/>).</param>
    public Mc146818Rtc(IDeviceClock clock, DateTime epoch, ulong ramBytes, int processors = 1,
        IInterruptLine? irq = null, Func<Action<long>, IVirtualTimer>? createTimer = null)
    {
        _clock = clock;
        _irq = irq;
        _timer = irq is null ? null : createTimer?.Invoke(OnTimer);
        _baseSeconds = epoch.Ticks / TimeSpan.TicksPerSecond;
        _cmos[RegisterA] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
        _cmos[RegisterB] = B24Hour;
        _cmos[RegisterD] = 0x80;
        SetWord(0x15, 640);
        ulong low = Hardware.Memory.GuestRam.BelowFourGiB(ramBytes), high = Hardware.Memory.GuestRam.AboveFourGiB(ramBytes);
        ulong extendedKiB = Math.Min(0xFFFFul, low / 1024 - Math.Min(low / 1024, 1024));
        SetWord(0x17, (ushort)extendedKiB);
        SetWord(0x30, (ushort)extendedKiB);
        ulong above16M = low > 16u << 20 ? Math.Min(0xFFFFul, (low - (16u << 20)) / 65536) : 0;
        SetWord(0x34, (ushort)above16M);
        if (high != 0)
        {
            _cmos[0x5B] = (byte)(high >> 16);
            _cmos[0x5C] = (byte)(high >> 24);
            _cmos[0x5D] = (byte)(high >> 32);
        }
        _cmos[0x5F] = (byte)Math.Max(0, processors - 1);
        int sum = 0;
        for (int i = 0x10; i <= 0x2D; i++)
        {
            sum += _cmos[i];
        }

        _cmos[0x2E] = (byte)(sum >> 8);
        _cmos[0x2F] = (byte)sum;
        Ports = new[] { new PortRange(IndexPort, DataPort) };
    }

    public string Name => "rtc";

    public IReadOnlyList<PortRange> Ports { get; }

    public IPortIoDevice PortIo => this;

    public bool NmiDisabled => _nmiDisabled;

    /// <summary>When the clock's timer fires next (an enabled interrupt's next event), or null.</summary>
    public long? NextInterruptCheck => _timer?.Deadline;

    /// <summary>The date and time the clock shows now.</summary>
    public DateTime Now => new(Seconds() * TimeSpan.TicksPerSecond, DateTimeKind.Utc);

    /// <summary>
    /// A wider access is one access per byte: reading 0x70 returns all ones (the index is write-only), 0x71 the
    /// selected register, and a byte beyond 0x71 all ones.
    /// </summary>
    public IoResult Read(ushort port, int size)
    {
        uint value = 0;
        for (int i = 0; i < size; i++)
        {
            uint b = port + i == DataPort ? ReadRegister(_index) : 0xFFu;
            value |= b << (8 * i);
        }

        return IoResult.Ok(value);
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        for (int i = 0; i < size; i++)
        {
            byte b = (byte)(value >> (8 * i));
            switch (port + i)
            {
                case IndexPort:
                    _index = (byte)(b & 0x7F);
                    _nmiDisabled = (b & 0x80) != 0;
                    break;
                case DataPort:
                    WriteRegister(_index, b);
                    break;
            }
        }

        return IoResult.Ok();
    }

    private byte ReadRegister(byte index)
    {
        switch (index)
        {
            case 0x00 or 0x02 or 0x04 or 0x06 or 0x07 or 0x08 or 0x09 or Century:
                return ReadTime(index, Time());
            case RegisterA:
                return (byte)(_cmos[RegisterA] & 0x7F | (UpdateInProgress() ? 0x80 : 0));
            case RegisterC:
                Accumulate();
                byte flags = _cmos[RegisterC];
                _cmos[RegisterC] = 0;
                _irq?.Lower();
                Reschedule();
                return flags;
            default:
                return _cmos[index];
        }
    }

    private void WriteRegister(byte index, byte b)
    {
        switch (index)
        {
            case 0x00 or 0x02 or 0x04 or 0x06 or 0x07 or 0x08 or 0x09 or Century:
                Accumulate();
                SetSeconds(WriteTime(index, b, Time()));
                Reschedule();
                break;
            case RegisterA:
                Accumulate();
                _cmos[RegisterA] = (byte)(b & 0x7F);
                Reschedule();
                break;
            case RegisterB:
                Accumulate();
                WriteRegisterB(b);
                Reschedule();
                break;
            case 0x01 or 0x03 or 0x05:
                _cmos[index] = b;
                Reschedule();
                break;
            case RegisterC or RegisterD:
                break; // read-only
            default:
                _cmos[index] = b;
                break;
        }
    }

    private void WriteRegisterB(byte b)
    {
        bool wasSet = (_cmos[RegisterB] & BSet) != 0, set = (b & BSet) != 0;
        if (set && !wasSet)
        {
            _frozenSeconds = Seconds();
        }
        else if (!set && wasSet)
        {
            // The clock starts again from what the guest set, at the start of a second.
            _baseSeconds = _frozenSeconds;
            _baseTime = _clock.Now;
        }

        // SET also clears the update-ended interrupt enable (data sheet, register B bit 4).
        _cmos[RegisterB] = set ? (byte)(b & ~BUpdateEnable) : b;
    }

    private bool Frozen => (_cmos[RegisterB] & BSet) != 0;

    private long Elapsed(long time) => Math.Max(0, time - _baseTime);

    private long Seconds() => Frozen ? _frozenSeconds : _baseSeconds + Elapsed(_clock.Now) / TicksPerSecond;

    private DateTime Time() => new(Math.Clamp(Seconds(), 0, DateTime.MaxValue.Ticks / TimeSpan.TicksPerSecond) * TimeSpan.TicksPerSecond);

    private void SetSeconds(long seconds)
    {
        if (Frozen)
        {
            _frozenSeconds = seconds;
            return;
        }

        // Keep the phase within the second, so that setting the clock does not move the next update.
        long now = _clock.Now;
        _baseTime = now - Elapsed(now) % TicksPerSecond;
        _baseSeconds = seconds;
    }

    private bool UpdateInProgress() =>
        !Frozen && Elapsed(_clock.Now) % TicksPerSecond >= TicksPerSecond - UpdateInProgressTicks;

    private bool Binary => (_cmos[RegisterB] & BBinary) != 0;

    private byte Encode(int value) => Binary ? (byte)value : (byte)((value / 10 << 4) | (value % 10));

    private int Decode(byte value) => Binary ? value : (value >> 4) * 10 + (value & 0x0F);

    private byte ReadTime(byte index, DateTime t)
    {
        switch (index)
        {
            case 0x00: return Encode(t.Second);
            case 0x02: return Encode(t.Minute);
            case 0x04:
                if ((_cmos[RegisterB] & B24Hour) != 0)
                {
                    return Encode(t.Hour);
                }

                int hour12 = t.Hour % 12 == 0 ? 12 : t.Hour % 12;
                return (byte)(Encode(hour12) | (t.Hour >= 12 ? 0x80 : 0));
            case 0x06: return Encode((int)t.DayOfWeek + 1);
            case 0x07: return Encode(t.Day);
            case 0x08: return Encode(t.Month);
            case 0x09: return Encode(t.Year % 100);
            default: return Encode(t.Year / 100);
        }
    }

    /// <summary>The clock's new time after the guest writes one field; a value that makes no date leaves it unchanged.</summary>
    private long WriteTime(byte index, byte b, DateTime t)
    {
        int second = t.Second, minute = t.Minute, hour = t.Hour, day = t.Day, month = t.Month, year = t.Year;
        switch (index)
        {
            case 0x00: second = Decode(b); break;
            case 0x02: minute = Decode(b); break;
            case 0x04:
                if ((_cmos[RegisterB] & B24Hour) != 0)
                {
                    hour = Decode(b);
                }
                else
                {
                    hour = Decode((byte)(b & 0x7F)) % 12 + ((b & 0x80) != 0 ? 12 : 0);
                }

                break;
            case 0x06: return Seconds(); // the day of the week follows from the date
            case 0x07: day = Decode(b); break;
            case 0x08: month = Decode(b); break;
            case 0x09: year = year / 100 * 100 + Decode(b); break;
            default: year = Decode(b) * 100 + year % 100; break;
        }

        if (second is < 0 or > 59 || minute is < 0 or > 59 || hour is < 0 or > 23 || month is < 1 or > 12 || year is < 1 or > 9999
            || day < 1 || day > DateTime.DaysInMonth(year, month))
        {
            return Seconds();
        }

        return new DateTime(year, month, day, hour, minute, second).Ticks / TimeSpan.TicksPerSecond;
    }

    private void SetWord(int index, ushort value)
    {
        _cmos[index] = (byte)value;
        _cmos[index + 1] = (byte)(value >> 8);
    }

    /// <summary>
    /// The machine was reset and this is its new RTC: what is battery-backed on a PC goes on from <paramref name="before"/>,
    /// the clock (its time and its phase within the second) and the CMOS RAM with the alarm bytes, and then the
    /// registers are as the firmware's power-on self-test leaves them, which is how a kernel booted directly finds a
    /// PC: register A at 0x26, register B 24-hour with only its daylight-saving bit kept (which also restarts a clock
    /// stopped by SET from what was set), C and D read. That is what QEMU shows after its reset and SeaBIOS's POST.
    /// </summary>
    /// <param name="before">The RTC of the machine before the reset.</param>
    /// <param name="beforeNow">The reset's time on <paramref name="before"/>'s clock (the old partition's guest time).</param>
    /// <param name="now">The same moment on this RTC's clock (the new partition's guest time).</param>
    public void ContinueAfterReset(Mc146818Rtc before, long beforeNow, long now)
    {
        Array.Copy(before._cmos, RegisterD + 1, _cmos, RegisterD + 1, _cmos.Length - (RegisterD + 1));
        (_cmos[0x01], _cmos[0x03], _cmos[0x05]) = (before._cmos[0x01], before._cmos[0x03], before._cmos[0x05]);
        if (before.Frozen)
        {
            _baseSeconds = before._frozenSeconds;
            _baseTime = now;
        }
        else
        {
            long elapsed = before.Elapsed(beforeNow);
            _baseSeconds = before._baseSeconds + (elapsed / TicksPerSecond);
            _baseTime = now - (elapsed % TicksPerSecond);
        }

        _cmos[RegisterA] = 0x26;
        _cmos[RegisterB] = (byte)((before._cmos[RegisterB] & BDaylightSaving) | B24Hour);
        _cmos[RegisterC] = 0;
        _cmos[RegisterD] = 0x80;
        _flagsCheckedAt = now;
        Reschedule();
    }

    public StateCodec<RtcState> StateCodec => RtcStateCodec.Instance;

    public RtcState Save() => new(_index, _nmiDisabled, _cmos.ToArray(), _baseSeconds, _baseTime, _frozenSeconds, _flagsCheckedAt);

    public bool Restore(RtcState state)
    {
        if (state.Cmos.Length != _cmos.Length)
        {
            return false;
        }

        (_index, _nmiDisabled, _baseSeconds, _baseTime, _frozenSeconds, _flagsCheckedAt) =
            ((byte)(state.Index & 0x7F), state.NmiDisabled, state.BaseSeconds, state.BaseTime, state.FrozenSeconds, state.FlagsCheckedAt);
        state.Cmos.CopyTo(_cmos, 0);
        // A pending IRQF was delivered before the save (the vCPU's saved state holds it), so the line is not raised
        // again; the timer is armed for what is enabled.
        Reschedule();
        return true;
    }
}
