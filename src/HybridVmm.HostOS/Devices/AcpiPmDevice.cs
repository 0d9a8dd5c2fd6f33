using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The ACPI fixed hardware a PC's chipset provides (ACPI 6.5, chapter 4.8), at the I/O addresses of QEMU's PIIX4 power
/// management function, which the FADT gives the guest: the PM1a event block at 0x600 (PM1_STS, PM1_EN), the PM1a
/// control block at 0x604 (PM1_CNT) and the 24-bit power management timer at 0x608 (PM_TMR).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>PM_TMR counts at 3.579545 MHz on the VM's virtual time, so a guest that calibrates against it (Linux's TSC and
/// local APIC timer, kvm-unit-tests' <c>vmexit_inl_pmtimer</c>) measures the virtual clock.</item>
/// <item>PM1_STS.TMR_STS (bit 0) is set each time the timer's bit 23 changes, and cleared by writing 1. While PM1_EN.TMR_EN
/// is set too, the SCI (IRQ 9, level-triggered, as the MADT's override declares) is asserted.</item>
/// <item>PM1_CNT.SCI_EN reads 1: the FADT has no SMI command port, so the platform is always in ACPI mode. Writing
/// SLP_EN with SLP_TYP 0, the DSDT's \_S5 value as on PIIX4, powers the VM off (S5). Other sleep types are ignored: the
/// DSDT offers no other sleep state.</item>
/// <item>Other status bits (power and sleep buttons, RTC, wake) are never set: the FADT declares no fixed buttons.</item>
/// </list>
/// </remarks>
public sealed class AcpiPmDevice : IChipsetDevice, IPortIoDevice, ISaveRestore<AcpiPmState>
{
    public const ushort Base = 0x600, EventBlock = Base, ControlBlock = Base + 4, TimerBlock = Base + 8;
    public const int Sci = 9;
    public const long TimerFrequency = 3_579_545;

    private const ushort TmrStatus = 1, TmrEnable = 1, SciEnable = 1, SleepEnable = 1 << 13, SleepTypeMask = 7 << 10;
    private const long TicksPerSecond = Hardware.Clock.VirtualClock.TicksPerSecond;

    private readonly IDeviceClock _clock;
    private readonly IVmControl _control;
    private readonly IInterruptLine _sci;
    private readonly IVirtualTimer _timer;
    private ushort _enable;
    private ushort _sleepType;
    // The timer's count divided by 2^23 when TMR_STS was last cleared: the status is set once the count moves past it.
    private long _timerPeriodCleared;

    public AcpiPmDevice(IDeviceClock clock, IVmControl control, IInterruptLine sci, Func<Action<long>, IVirtualTimer> createTimer)
    {
        _clock = clock;
        _control = control;
        _sci = sci;
        _timer = createTimer(_ => UpdateSci());
    }

    public string Name => "acpi-pm";

    public IPortIoDevice PortIo => this;

    public IReadOnlyList<PortRange> Ports { get; } = [new PortRange(Base, TimerBlock + 3)];

    /// <summary>The timer's count since power-on, not yet truncated to 24 bits.</summary>
    private long Count(long now) => (long)((Int128)Math.Max(now, 0) * TimerFrequency / TicksPerSecond);

    private bool TimerStatus => Count(_clock.Now) >> 23 != _timerPeriodCleared;

    private ushort Status => (ushort)(TimerStatus ? TmrStatus : 0);

    public IoResult Read(ushort port, int size)
    {
        Span<byte> block = stackalloc byte[12];
        BitConverter.TryWriteBytes(block[0..], Status);
        BitConverter.TryWriteBytes(block[2..], _enable);
        BitConverter.TryWriteBytes(block[4..], (ushort)(SciEnable | _sleepType));
        BitConverter.TryWriteBytes(block[8..], (uint)(Count(_clock.Now) & 0xFF_FFFF));
        uint value = 0;
        int offset = port - Base;
        for (int i = 0; i < size && offset + i < block.Length; i++)
        {
            value |= (uint)block[offset + i] << (8 * i);
        }

        return IoResult.Ok(value);
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        bool sleep = false;
        for (int i = 0; i < size; i++)
        {
            int offset = port - Base + i;
            ushort b = (ushort)((value >> (8 * i)) & 0xFF), shift = (ushort)(8 * (offset & 1));
            switch (offset)
            {
                case 0 when (b & TmrStatus) != 0:
                    _timerPeriodCleared = Count(_clock.Now) >> 23; // write 1 to clear
                    break;
                case 2 or 3:
                    _enable = (ushort)((_enable & ~(0xFF << shift)) | (b << shift));
                    break;
                case 5:
                    _sleepType = (ushort)((b << 8) & SleepTypeMask);
                    sleep = ((b << 8) & SleepEnable) != 0;
                    break;
            }
        }

        UpdateSci();
        if (sleep && _sleepType == 0)
        {
            _control.RequestPowerOff();
        }

        return IoResult.Ok();
    }

    /// <summary>The SCI follows TMR_STS and TMR_EN; while it is low and enabled, the timer waits for the next change of bit 23.</summary>
    private void UpdateSci()
    {
        bool enabled = (_enable & TmrEnable) != 0;
        if (enabled && TimerStatus)
        {
            _sci.Raise();
            _timer.Cancel();
            return;
        }

        _sci.Lower();
        if (enabled)
        {
            long count = (_timerPeriodCleared + 1) << 23;
            _timer.ArmAt((long)(((Int128)count * TicksPerSecond + TimerFrequency - 1) / TimerFrequency));
        }
        else
        {
            _timer.Cancel();
        }
    }

    public StateCodec<AcpiPmState> StateCodec => AcpiPmStateCodec.Instance;

    public AcpiPmState Save() => new(_enable, _sleepType, _timerPeriodCleared);

    public bool Restore(AcpiPmState state)
    {
        if ((state.SleepType & ~SleepTypeMask) != 0 || state.TimerPeriodCleared < 0)
        {
            return false;
        }

        (_enable, _sleepType, _timerPeriodCleared) = (state.Enable, state.SleepType, state.TimerPeriodCleared);
        UpdateSci();
        return true;
    }
}

/// <summary>The ACPI registers' saved state: PM1_EN, PM1_CNT's SLP_TYP, and the timer period TMR_STS was last cleared in.</summary>
public sealed record AcpiPmState(ushort Enable, ushort SleepType, long TimerPeriodCleared);

/// <summary>Chunk "device.acpi-pm", version 1: PM1_EN and SLP_TYP (u16 each), then the period (i64).</summary>
public sealed class AcpiPmStateCodec : StateCodec<AcpiPmState>
{
    public static readonly AcpiPmStateCodec Instance = new();

    public override string StateName => "ACPI power management registers";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, AcpiPmState s)
    {
        w.WriteUInt16(s.Enable);
        w.WriteUInt16(s.SleepType);
        w.WriteInt64(s.TimerPeriodCleared);
    }

    public override AcpiPmState Read(SavedStateReader r, int version) => new(r.ReadUInt16(), r.ReadUInt16(), r.ReadInt64());
}
