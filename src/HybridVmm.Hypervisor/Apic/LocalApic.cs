using System.Numerics;
using HybridVmm.Hardware.Cpu;
using static HybridVmm.Hypervisor.Apic.ApicRegisters;

namespace HybridVmm.Hypervisor.Apic;

/// <summary>
/// One vCPU's local APIC in xAPIC mode (Intel SDM Vol. 3A, chapter 11), served in the kernel as Hyper-V does: the
/// IA32_APIC_BASE MSR, the 4 KiB register page at its base, interrupt acceptance and priority (IRR, ISR, TPR, PPR,
/// EOI), the local vector table, the timer on virtual time, and the ICR for interrupts to itself. The core takes its
/// interrupts through <see cref="ILocalInterruptController"/> at an instruction boundary, without an exit, as VMX's
/// virtual-interrupt delivery does. Touched only by the scheduler thread (or while the partition does not run).
/// </summary>
/// <remarks>
/// Register accesses follow QEMU's APIC where the SDM leaves a choice: a 32-bit access anywhere in a register's 16
/// bytes reaches that register, a narrower one reads 0 and writes nothing; a reserved register reads 0 and sets ESR's
/// illegal-register bit. The power-on state is what SeaBIOS leaves QEMU's APIC in for a kernel it boots (see
/// <see cref="PowerOn"/>). INIT, SIPI, SMI and interrupts to other processors need SMP and are ignored.
/// </remarks>
internal sealed partial class LocalApic : ILocalInterruptController
{
    private readonly X86Core _core;
    private readonly uint[] _irr = new uint[8], _isr = new uint[8], _tmr = new uint[8], _autoEoi = new uint[8];
    private readonly uint[] _lvt = new uint[LvtCount];
    private uint _tpr, _ldr, _dfr, _svr, _esr, _esrPending, _icrLow, _icrHigh;
    private byte _id;

    internal LocalApic(X86Core core, byte id, bool bootstrap = true)
    {
        _core = core;
        _id = id;
        if (bootstrap)
        {
            PowerOn();
        }
        else
        {
            // An application processor's APIC as firmware leaves it: enabled, not the BSP, in the architectural reset state.
            BaseMsr = DefaultBase | BaseEnable;
            ArchitecturalReset();
        }
    }

    /// <summary>The other processors' APICs, for IPIs; null on a lone APIC, which can only reach itself.</summary>
    internal IApicBus? Bus { get; set; }

    /// <summary>INIT (SDM Vol. 3A, 11.4.7.3): the APIC returns to its reset state; its ID and IA32_APIC_BASE stay.</summary>
    public void Init() => ArchitecturalReset();

    /// <summary>IA32_APIC_BASE as RDMSR reads it.</summary>
    public ulong BaseMsr { get; private set; }

    /// <summary>IA32_APIC_BASE[11]: the APIC exists for the guest (CPUID.1:EDX.APIC, the register page).</summary>
    public bool GloballyEnabled => (BaseMsr & BaseEnable) != 0;

    public bool SoftwareEnabled => (_svr & SvrEnable) != 0;

    public ulong PageAddress => BaseMsr & BaseAddressMask;

    /// <summary>Whether the 8259's INTR reaches the processor: through LINT0 (unmasked, ExtINT: virtual-wire mode) or with the APIC globally disabled.</summary>
    public bool AcceptsExtInt => !GloballyEnabled || (_lvt[LvtLint0] & LvtMasked) == 0;

    /// <summary>
    /// The state SeaBIOS leaves for a kernel under <c>qemu-system-i386</c> (read by the <c>apic</c> sample guest): base
    /// 0xFEE00000, BSP, globally enabled; SVR 0x1FF (software enabled, spurious vector 0xFF); LINT0 0x8700 (ExtINT,
    /// level: virtual-wire mode, so the 8259's INTR reaches the processor), LINT1 0x8400 (NMI); the other LVT entries
    /// masked; TPR 0; DFR flat; ICR low 0x000C4610, the INIT-SIPI broadcast with which SeaBIOS counted processors.
    /// </summary>
    public void PowerOn()
    {
        BaseMsr = DefaultBase | BaseBsp | BaseEnable;
        ArchitecturalReset();
        _svr = SvrEnable | 0xFF;
        _lvt[LvtLint0] = (ModeExtInt << 8) | LvtLevelTriggered;
        _lvt[LvtLint1] = (ModeNmi << 8) | LvtLevelTriggered;
        _icrLow = 0x000C_4610;
    }

    /// <summary>The reset state of SDM Vol. 3A, 11.4.7.1: everything 0 but DFR (all ones), the LVT (masked) and SVR (0xFF).</summary>
    private void ArchitecturalReset()
    {
        Array.Clear(_irr);
        Array.Clear(_isr);
        Array.Clear(_tmr);
        Array.Fill(_lvt, LvtMasked);
        _tpr = _ldr = _esr = _esrPending = _icrLow = _icrHigh = 0;
        _dfr = 0xFFFF_FFFF;
        _svr = 0xFF;
        ResetTimer();
        _core.LocalInterruptsChanged();
    }

    /// <summary>Whether a guest-physical access lands in the register page (only while globally enabled).</summary>
    public bool Claims(ulong gpa) => GloballyEnabled && (gpa & ~0xFFFUL) == PageAddress;

    // ---- IA32_APIC_BASE ------------------------------------------------------------------------------------------

    /// <summary>
    /// WRMSR IA32_APIC_BASE. False (#GP) for reserved bits: 7:0, 9 (no x2APIC), 10 and 63:36 (MAXPHYADDR 36). The BSP
    /// flag is read-only. Clearing bit 11 disables the APIC and resets it: its page is ordinary unbacked memory again and
    /// CPUID stops reporting it. Setting the bit again enables it, in that reset state, as on every processor since the
    /// Pentium 4 and in KVM (SDM Vol. 3A, 11.4.3; the Pentium Pro to Pentium III kept it disabled until reset, and QEMU's
    /// TCG keeps the bit clear but goes on serving the page): kvm-unit-tests' reset_apic() disables and enables it so.
    /// </summary>
    public bool WriteBaseMsr(ulong value)
    {
        if ((value & ~(BaseAddressMask | BaseEnable | BaseBsp)) != 0)
        {
            return false;
        }

        ulong enable = value & BaseEnable;
        bool disabling = GloballyEnabled && enable == 0;
        BaseMsr = (value & BaseAddressMask) | (BaseMsr & BaseBsp) | enable;
        if (disabling)
        {
            ArchitecturalReset();
        }

        return true;
    }

    // ---- acceptance and priority (SDM Vol. 3A, 11.8) --------------------------------------------------------------

    /// <summary>
    /// Accepts a fixed interrupt (an LVT entry, a self-IPI, a SynIC SINT): its IRR bit is set; TMR records level or edge.
    /// Vectors 0-15 are illegal: ESR's received-illegal-vector bit instead (SDM Vol. 3A, 11.5.3).
    /// </summary>
    public void Accept(byte vector, bool level = false)
    {
        if (vector < 16)
        {
            ReportError(EsrReceiveIllegalVector);
            return;
        }

        Set(_irr, vector);
        if (level) Set(_tmr, vector);
        else Clear(_tmr, vector);
        _core.LocalInterruptsChanged();
    }

    /// <summary>Vectors the SynIC delivers with auto-EOI (TLFS 11.8.4): acknowledged without entering ISR.</summary>
    public void SetAutoEoi(byte vector, bool autoEoi)
    {
        if (autoEoi) Set(_autoEoi, vector);
        else Clear(_autoEoi, vector);
    }

    /// <summary>PPR (SDM Vol. 3A, 11.8.3.1): TPR if its class is at least that of the highest in-service vector, else that class.</summary>
    public uint ProcessorPriority
    {
        get
        {
            uint isrv = (uint)Math.Max(Highest(_isr), 0);
            return (_tpr >> 4) >= (isrv >> 4) ? _tpr : isrv & 0xF0;
        }
    }

    /// <summary>APR for a P6-family APIC: TPR if it is at least the highest requested and above the in-service class, else the highest of the three classes.</summary>
    private uint ArbitrationPriority
    {
        get
        {
            uint isrv = (uint)Math.Max(Highest(_isr), 0), irrv = (uint)Math.Max(Highest(_irr), 0);
            uint tprClass = _tpr >> 4;
            return tprClass >= irrv >> 4 && tprClass > isrv >> 4 ? _tpr : Math.Max(_tpr & 0xF0, Math.Max(isrv & 0xF0, irrv & 0xF0));
        }
    }

    /// <inheritdoc/>
    public bool HasInterrupt
    {
        get
        {
            if (!GloballyEnabled || !SoftwareEnabled)
            {
                return false; // a software-disabled APIC holds its IRR (SDM Vol. 3A, 11.4.7.2)
            }

            int irrv = Highest(_irr);
            return irrv >= 0 && (irrv & 0xF0) > (ProcessorPriority & 0xF0);
        }
    }

    /// <inheritdoc/>
    public byte Acknowledge()
    {
        int irrv = Highest(_irr);
        if (!HasInterrupt || irrv < 0)
        {
            return (byte)_svr; // the request went away before the acknowledge: the spurious vector, ISR untouched (11.9)
        }

        Clear(_irr, irrv);
        if (!IsSet(_autoEoi, irrv))
        {
            Set(_isr, irrv);
        }

        _core.LocalInterruptsChanged();
        return (byte)irrv;
    }

    /// <summary>
    /// A write to EOI: the highest in-service vector leaves ISR. A level-triggered one (its TMR bit set) is also
    /// broadcast to the I/O APIC (SDM Vol. 3A, 11.8.5), which here is the root's device: the kernel tells it through an
    /// EOI intercept, Hyper-V's HvMessageTypeX64ApicEoi (<see cref="TakeLevelTriggeredEoi"/>).
    /// </summary>
    private void EndOfInterrupt()
    {
        int isrv = Highest(_isr);
        if (isrv >= 0)
        {
            Clear(_isr, isrv);
            if (IsSet(_tmr, isrv))
            {
                _levelTriggeredEoi = isrv;
            }

            _core.LocalInterruptsChanged();
        }
    }

    private int _levelTriggeredEoi = -1;

    /// <summary>The vector of a level-triggered interrupt the last register write ended (its EOI goes to the root), or null.</summary>
    public byte? TakeLevelTriggeredEoi()
    {
        int vector = _levelTriggeredEoi;
        _levelTriggeredEoi = -1;
        return vector < 0 ? null : (byte)vector;
    }

    /// <summary>
    /// Whether an interrupt message for <paramref name="destination"/> reaches this APIC (SDM Vol. 3A, 11.6.2): in
    /// physical mode its ID or the broadcast 0xFF; in logical mode its LDR in the DFR's model, flat (a bitmap of 8) or
    /// cluster (a cluster in the high nibble and a bitmap of 4).
    /// </summary>
    public bool MatchesDestination(byte destination, bool logical)
    {
        if (!logical)
        {
            return destination == 0xFF || destination == _id;
        }

        uint ldr = _ldr >> 24;
        return (_dfr >> 28) == 0xF
            ? (destination & ldr) != 0
            : ((destination ^ ldr) & 0xF0) == 0 && (destination & ldr & 0x0F) != 0;
    }

    private void ReportError(uint bit)
    {
        _esrPending |= bit;
        DeliverLocal(LvtError);
    }

    /// <summary>Raises an LVT entry's interrupt, unless masked: fixed (into IRR) or NMI; SMI, INIT and ExtINT are not simulated there.</summary>
    private void DeliverLocal(int lvt)
    {
        uint entry = _lvt[lvt];
        if ((entry & LvtMasked) != 0)
        {
            return;
        }

        switch (DeliveryMode(entry))
        {
            case ModeFixed:
                if ((byte)entry < 16)
                {
                    _esrPending |= EsrReceiveIllegalVector; // not reported through the error LVT again
                    return;
                }

                Accept((byte)entry, lvt is LvtLint0 or LvtLint1 && (entry & LvtLevelTriggered) != 0);
                break;
            case ModeNmi:
                _core.RequestNmi();
                break;
        }
    }

    private static int Highest(uint[] bits)
    {
        for (int i = 7; i >= 0; i--)
        {
            if (bits[i] != 0)
            {
                return i * 32 + 31 - BitOperations.LeadingZeroCount(bits[i]);
            }
        }

        return -1;
    }

    private static void Set(uint[] bits, int vector) => bits[vector >> 5] |= 1u << (vector & 31);

    private static void Clear(uint[] bits, int vector) => bits[vector >> 5] &= ~(1u << (vector & 31));

    private static bool IsSet(uint[] bits, int vector) => (bits[vector >> 5] & (1u << (vector & 31))) != 0;
}
