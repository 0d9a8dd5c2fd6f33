namespace HybridVmm.HostOS.Devices;

/// <summary>
/// One Intel 8259A programmable interrupt controller: the interrupt request register (IRR), in-service register (ISR)
/// and mask register (IMR), the priority resolver with rotation, the initialization sequence (ICW1-ICW4) and the
/// operation commands (OCW1-OCW3), as the 8259A data sheet describes them. Two of them, cascaded, make the PC's
/// controller (<see cref="DualPic8259"/>), which owns the ports; this class only holds one chip's logic.
/// </summary>
/// <remarks>
/// Edge or level sensing per input comes from the PC's ELCR (the 8259A's own LTIM bit of ICW1 is ignored, as on PC
/// chipsets, where the ELCR replaces it). An edge input latches its IRR bit on a rising edge and keeps it until the
/// acknowledge; a level input's IRR bit follows the input. ICW1 resets the edge sense, so an input that is already
/// high must fall and rise again to request (data sheet: "following initialization an interrupt request input must
/// make a low-to-high transition"), and forgets the edge requests it had latched. ICW4's microprocessor mode bit is
/// ignored (8086 vectors always) and buffered mode has no effect.
/// </remarks>
internal sealed class Pic8259
{
    /// <summary>The ELCR bits a PC chipset lets software write (master: IRQ 3-7; slave: IRQ 9-12, 14, 15).</summary>
    private readonly byte _elcrMask;

    public Pic8259(byte elcrMask) => _elcrMask = elcrMask;

    public byte Irr, Isr, Imr;
    /// <summary>The inputs as last seen (for edge detection); cleared by ICW1.</summary>
    public byte LastInput;
    public byte Elcr;
    /// <summary>The input with the lowest priority (7 after initialization; rotation moves it).</summary>
    public byte LowestPriority = 7;
    public byte VectorBase;
    /// <summary>0: operational; 1, 2, 3: waiting for ICW2, ICW3, ICW4.</summary>
    public byte InitState;
    public bool NeedIcw4, SingleMode, AutoEoi, RotateOnAutoEoi, SpecialFullyNested, SpecialMask, ReadIsr, Poll;
    public byte Icw3;

    public byte ElcrMask => _elcrMask;

    /// <summary>Sets the level of input <paramref name="irq"/> (0-7).</summary>
    public void SetInput(int irq, bool level)
    {
        byte bit = (byte)(1 << irq);
        if ((Elcr & bit) != 0)
        {
            Irr = level ? (byte)(Irr | bit) : (byte)(Irr & ~bit);
        }
        else if (level && (LastInput & bit) == 0)
        {
            Irr |= bit;
        }

        LastInput = level ? (byte)(LastInput | bit) : (byte)(LastInput & ~bit);
    }

    /// <summary>0 for the highest priority, 7 for the lowest, given the rotation.</summary>
    private int Priority(int irq) => (irq - LowestPriority - 1) & 7;

    /// <summary>The input of highest priority among <paramref name="bits"/>, or -1.</summary>
    private int Highest(byte bits)
    {
        if (bits == 0)
        {
            return -1;
        }

        for (int i = 0; i < 8; i++)
        {
            int irq = (LowestPriority + 1 + i) & 7;
            if ((bits & (1 << irq)) != 0)
            {
                return irq;
            }
        }

        return -1;
    }

    /// <summary>
    /// The request the chip would present on INTR, or -1: the unmasked request of highest priority, if no input of
    /// equal or higher priority is in service. In special mask mode, a masked in-service input blocks nothing; a master
    /// in special fully nested mode lets its cascade input (<paramref name="cascadeIrq"/>) nest over itself.
    /// </summary>
    public int PendingRequest(int cascadeIrq = -1)
    {
        int request = Highest((byte)(Irr & ~Imr));
        if (request < 0)
        {
            return -1;
        }

        byte inService = SpecialMask ? (byte)(Isr & ~Imr) : Isr;
        if (SpecialFullyNested && cascadeIrq >= 0)
        {
            inService &= (byte)~(1 << cascadeIrq);
        }

        int current = Highest(inService);
        return current < 0 || Priority(request) < Priority(current) ? request : -1;
    }

    /// <summary>The interrupt acknowledge of <paramref name="irq"/>: IRR to ISR (or, with auto-EOI, to nowhere).</summary>
    public void Acknowledge(int irq)
    {
        byte bit = (byte)(1 << irq);
        if (AutoEoi)
        {
            if (RotateOnAutoEoi)
            {
                LowestPriority = (byte)irq;
            }
        }
        else
        {
            Isr |= bit;
        }

        if ((Elcr & bit) == 0)
        {
            Irr &= (byte)~bit; // an edge request is consumed; a level one stays while its input is high
        }
    }

    /// <summary>A write to the command port (A0 = 0): ICW1, OCW2 or OCW3.</summary>
    public void WriteCommand(byte value)
    {
        if ((value & 0x10) != 0)
        {
            // ICW1: starts the initialization sequence.
            Irr &= Elcr;
            LastInput = 0;
            Isr = Imr = 0;
            LowestPriority = 7;
            SpecialMask = ReadIsr = Poll = false;
            AutoEoi = RotateOnAutoEoi = SpecialFullyNested = false;
            NeedIcw4 = (value & 0x01) != 0;
            SingleMode = (value & 0x02) != 0;
            InitState = 1;
            return;
        }

        if ((value & 0x08) != 0)
        {
            // OCW3: poll, read register select, special mask mode.
            if ((value & 0x04) != 0)
            {
                Poll = true;
            }

            if ((value & 0x02) != 0)
            {
                ReadIsr = (value & 0x01) != 0;
            }

            if ((value & 0x40) != 0)
            {
                SpecialMask = (value & 0x20) != 0;
            }

            return;
        }

        // OCW2: R, SL, EOI and the level L.
        int level = value & 7;
        switch (value >> 5)
        {
            case 0: // rotate in automatic EOI mode (clear)
                RotateOnAutoEoi = false;
                break;
            case 4: // rotate in automatic EOI mode (set)
                RotateOnAutoEoi = true;
                break;
            case 1: // non-specific EOI
            case 5: // rotate on non-specific EOI
                int served = Highest(Isr);
                if (served >= 0)
                {
                    Isr &= (byte)~(1 << served);
                    if (value >> 5 == 5)
                    {
                        LowestPriority = (byte)served;
                    }
                }

                break;
            case 3: // specific EOI
                Isr &= (byte)~(1 << level);
                break;
            case 7: // rotate on specific EOI
                Isr &= (byte)~(1 << level);
                LowestPriority = (byte)level;
                break;
            case 6: // set priority
                LowestPriority = (byte)level;
                break;
            // case 2: no operation
        }
    }

    /// <summary>A write to the data port (A0 = 1): ICW2-ICW4 during initialization, OCW1 (the mask) otherwise.</summary>
    public void WriteData(byte value)
    {
        switch (InitState)
        {
            case 1:
                VectorBase = (byte)(value & 0xF8);
                InitState = (byte)(SingleMode ? (NeedIcw4 ? 3 : 0) : 2);
                break;
            case 2:
                Icw3 = value;
                InitState = (byte)(NeedIcw4 ? 3 : 0);
                break;
            case 3:
                SpecialFullyNested = (value & 0x10) != 0;
                AutoEoi = (value & 0x02) != 0;
                InitState = 0;
                break;
            default:
                Imr = value;
                break;
        }
    }

    /// <summary>A read of the command port without poll: IRR or ISR, as OCW3 last selected.</summary>
    public byte ReadStatus() => ReadIsr ? Isr : Irr;

    public void WriteElcr(byte value) => Elcr = (byte)(value & _elcrMask);
}
