namespace HybridVmm.Hypervisor.Apic;

/// <summary>
/// The xAPIC's numbers (Intel SDM Vol. 3A, 11.4 and table 11-1): the IA32_APIC_BASE MSR, register offsets in the
/// 4 KiB MMIO page (each register sits at a 16-byte aligned offset), and the bits of the LVT, ICR and SVR.
/// </summary>
internal static class ApicRegisters
{
    public const uint Ia32ApicBase = 0x1B;

    /// <summary>IA32_APIC_BASE: bit 8 BSP, bit 11 global enable, bits 35:12 the page (MAXPHYADDR is 36; SDM Vol. 3A, 11.4.4).</summary>
    public const ulong BaseBsp = 1UL << 8, BaseEnable = 1UL << 11, BaseAddressMask = 0xF_FFFF_F000;
    public const ulong DefaultBase = 0xFEE0_0000;

    /// <summary>Register indices: the offset in the page divided by 16.</summary>
    public const int Id = 0x02, VersionIndex = 0x03, Tpr = 0x08, Apr = 0x09, Ppr = 0x0A, Eoi = 0x0B, Ldr = 0x0D, Dfr = 0x0E, Svr = 0x0F,
        IsrFirst = 0x10, TmrFirst = 0x18, IrrFirst = 0x20, Esr = 0x28, IcrLow = 0x30, IcrHigh = 0x31, LvtFirst = 0x32,
        InitialCount = 0x38, CurrentCount = 0x39, DivideConfiguration = 0x3E;

    /// <summary>LVT entries in register order: timer (0x320), thermal (0x330), performance (0x340), LINT0, LINT1, error (0x370).</summary>
    public const int LvtTimer = 0, LvtThermal = 1, LvtPerformance = 2, LvtLint0 = 3, LvtLint1 = 4, LvtError = 5, LvtCount = 6;

    /// <summary>
    /// Version 0x14 (an integrated APIC) with a maximum LVT entry of 5 (six entries, no CMCI), what QEMU's APIC reports;
    /// bit 24 (EOI-broadcast suppression) is clear.
    /// </summary>
    public const uint VersionValue = 0x0005_0014;

    public const uint LvtMasked = 1u << 16;
    public const uint LvtTimerPeriodic = 1u << 17;
    public const uint LvtLevelTriggered = 1u << 15;

    /// <summary>The writable bits of each LVT (SDM figure 11-8): no TSC-deadline mode, delivery status and remote IRR read-only.</summary>
    public static readonly uint[] LvtWritable =
    [
        0xFF | LvtMasked | LvtTimerPeriodic,                   // timer: vector, mask, mode (periodic; bit 18 is TSC-deadline, not offered)
        0x7FF | LvtMasked,                                     // thermal: vector, delivery mode, mask
        0x7FF | LvtMasked,                                     // performance counters
        0x7FF | (1u << 13) | LvtLevelTriggered | LvtMasked,    // LINT0: vector, delivery mode, polarity, trigger mode, mask
        0x7FF | (1u << 13) | LvtLevelTriggered | LvtMasked,    // LINT1
        0xFF | LvtMasked,                                      // error: vector, mask
    ];

    /// <summary>Delivery modes (bits 10:8 of an LVT entry or of the ICR).</summary>
    public const uint ModeFixed = 0, ModeLowestPriority = 1, ModeSmi = 2, ModeNmi = 4, ModeInit = 5, ModeStartup = 6, ModeExtInt = 7;

    /// <summary>SVR bit 8: the APIC is software enabled. Bits 7:0 the spurious vector; bit 9 (focus checking) reads 0, as on QEMU.</summary>
    public const uint SvrEnable = 1u << 8, SvrWritable = 0x1FF;

    /// <summary>ESR bits (SDM figure 11-9): send illegal vector (5), received illegal vector (6), illegal register address (7).</summary>
    public const uint EsrSendIllegalVector = 1u << 5, EsrReceiveIllegalVector = 1u << 6, EsrIllegalRegister = 1u << 7;

    /// <summary>ICR: delivery status (bit 12) reads 0, the send is immediate; writable bits of the low and high words.</summary>
    public const uint IcrLowWritable = 0x000C_CFFF, IcrHighWritable = 0xFF00_0000;

    /// <summary>Bits 3, 1 and 0 of the divide configuration register select the divisor.</summary>
    public const uint DivideWritable = 0xB;

    /// <summary>The APIC timer counts at the virtual clock's 1 GHz (one tick per nanosecond of virtual time), divided as configured.</summary>
    public const long TimerBaseFrequency = Hardware.Clock.VirtualClock.TicksPerSecond;

    public static uint DeliveryMode(uint entry) => (entry >> 8) & 7;
}
