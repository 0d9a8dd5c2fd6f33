using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The PC's legacy interrupt controller: two 8259A PICs (<see cref="Pic8259"/>), the master at 0x20/0x21 and the slave
/// at 0xA0/0xA1 cascaded on the master's IR2, and the edge/level control registers (ELCR) at 0x4D0/0x4D1. Platform
/// interrupt lines 0-7 are the master's inputs and 8-15 the slave's. The master's INTR output goes to the VM worker,
/// which asks the kernel for an interrupt window while it is high; at the window the worker calls
/// <see cref="Acknowledge"/> (the processor's INTA cycles), which chooses the vector then, not when the line rose.
/// </summary>
/// <remarks>
/// The controller starts as QEMU's PC shows it to a Multiboot kernel after SeaBIOS (checked with the <c>pic</c> sample
/// guest): initialized, edge-triggered except IRQ 10 and 11 (ELCR 0x00, 0x0C), the master at vector 0x08 with IRQ 0, 1,
/// 2 and 6 unmasked (IMR 0xB8), the slave at vector 0x70 with IRQ 8, 12, 13 and 14 unmasked (IMR 0x8E), IRR selected
/// for reads, no rotation, no auto-EOI. An acknowledge that finds no request (it went away between INTR and INTA)
/// returns IRQ 7's vector of that chip and sets no ISR bit: the spurious interrupt of the data sheet.
/// </remarks>
public sealed class DualPic8259 : IChipsetDevice, IPortIoDevice, ISaveRestore<DualPicState>
{
    public const ushort MasterCommand = 0x20, MasterData = 0x21, SlaveCommand = 0xA0, SlaveData = 0xA1, ElcrMaster = 0x4D0, ElcrSlave = 0x4D1;
    public const int CascadeIrq = 2;

    private readonly Pic8259 _master = new(0xF8);
    private readonly Pic8259 _slave = new(0xDE);
    private Action<bool>? _intrChanged;

    public DualPic8259()
    {
        PowerOn(_master, 0x08, 0xB8, 0x00, 0x04);
        PowerOn(_slave, 0x70, 0x8E, 0x0C, 0x02);
    }

    private static void PowerOn(Pic8259 pic, byte vectorBase, byte imr, byte elcr, byte icw3)
    {
        pic.VectorBase = vectorBase;
        pic.Imr = imr;
        pic.Elcr = elcr;
        pic.Icw3 = icw3;
    }

    public string Name => "pic";

    public IReadOnlyList<PortRange> Ports { get; } = new[]
    {
        new PortRange(MasterCommand, MasterData), new PortRange(SlaveCommand, SlaveData), new PortRange(ElcrMaster, ElcrSlave),
    };

    public IPortIoDevice PortIo => this;

    /// <summary>The master's INTR output as last computed.</summary>
    public bool Intr { get; private set; }

    /// <summary>Connects INTR to the processor side (the VM worker's interrupt-window request); reports the current level at once.</summary>
    public void ConnectIntr(Action<bool> intrChanged)
    {
        _intrChanged = intrChanged;
        intrChanged(Intr);
    }

    /// <summary>Sets the level of platform interrupt line <paramref name="irq"/> (0-15); other numbers are not connected.</summary>
    public void SetIrq(int irq, bool level)
    {
        if ((uint)irq >= 16)
        {
            return;
        }

        (irq < 8 ? _master : _slave).SetInput(irq & 7, level);
        Update();
    }

    /// <summary>What an interrupt acknowledge returned: the vector, the IRQ it came from, and whether it was spurious.</summary>
    public readonly record struct Acknowledgement(byte Vector, int Irq, bool Spurious);

    /// <summary>
    /// The two INTA cycles: the master's request of highest priority moves from IRR to ISR and, for the cascade input,
    /// the slave's too; the vector is the chip's base plus the input. With no request, IRQ 7 (or 15) spuriously.
    /// </summary>
    public Acknowledgement Acknowledge()
    {
        Acknowledgement result;
        int irq = _master.PendingRequest(CascadeIrq);
        if (irq < 0)
        {
            result = new((byte)(_master.VectorBase + 7), 7, true);
        }
        else
        {
            _master.Acknowledge(irq);
            if (irq == CascadeIrq && !_master.SingleMode)
            {
                int slaveIrq = _slave.PendingRequest();
                if (slaveIrq < 0)
                {
                    result = new((byte)(_slave.VectorBase + 7), 15, true);
                }
                else
                {
                    _slave.Acknowledge(slaveIrq);
                    result = new((byte)(_slave.VectorBase + slaveIrq), 8 + slaveIrq, false);
                }
            }
            else
            {
                result = new((byte)(_master.VectorBase + irq), irq, false);
            }
        }

        Update();
        return result;
    }

    /// <summary>Recomputes the slave's INTR (the master's IR2) and the master's INTR, and reports a change of the latter.</summary>
    private void Update()
    {
        if (!_master.SingleMode)
        {
            _master.SetInput(CascadeIrq, _slave.PendingRequest() >= 0);
        }

        bool intr = _master.PendingRequest(CascadeIrq) >= 0;
        if (intr != Intr)
        {
            Intr = intr;
            _intrChanged?.Invoke(intr);
        }
    }

    public IoResult Read(ushort port, int size)
    {
        uint value = 0;
        for (int i = 0; i < size; i++)
        {
            value |= (uint)ReadByte((ushort)(port + i)) << (8 * i);
        }

        return IoResult.Ok(value);
    }

    public IoResult Write(ushort port, int size, uint value)
    {
        for (int i = 0; i < size; i++)
        {
            WriteByte((ushort)(port + i), (byte)(value >> (8 * i)));
        }

        return IoResult.Ok();
    }

    private byte ReadByte(ushort port)
    {
        switch (port)
        {
            case MasterCommand or MasterData or SlaveCommand or SlaveData:
                Pic8259 pic = port < SlaveCommand ? _master : _slave;
                if (pic.Poll)
                {
                    return PollRead(pic);
                }

                return (port & 1) == 0 ? pic.ReadStatus() : pic.Imr;
            case ElcrMaster:
                return _master.Elcr;
            case ElcrSlave:
                return _slave.Elcr;
            default:
                return 0xFF; // a wider access reaching a port this device does not own
        }
    }

    /// <summary>
    /// Poll mode (OCW3 with P): the next read is the acknowledge, made by software. It returns 0x80 with the input of
    /// highest priority, or 0 with no request (as QEMU's PIC, which the sample guest compares against, does).
    /// </summary>
    private byte PollRead(Pic8259 pic)
    {
        pic.Poll = false;
        int irq = pic.PendingRequest(pic == _master ? CascadeIrq : -1);
        if (irq < 0)
        {
            return 0;
        }

        pic.Acknowledge(irq);
        Update();
        return (byte)(0x80 | irq);
    }

    private void WriteByte(ushort port, byte value)
    {
        switch (port)
        {
            case MasterCommand:
                _master.WriteCommand(value);
                break;
            case MasterData:
                _master.WriteData(value);
                break;
            case SlaveCommand:
                _slave.WriteCommand(value);
                break;
            case SlaveData:
                _slave.WriteData(value);
                break;
            case ElcrMaster:
                _master.WriteElcr(value);
                break;
            case ElcrSlave:
                _slave.WriteElcr(value);
                break;
            default:
                return;
        }

        Update();
    }

    public StateCodec<DualPicState> StateCodec => DualPicStateCodec.Instance;

    public DualPicState Save() => new(Save(_master), Save(_slave));

    public bool Restore(DualPicState state)
    {
        Restore(_master, state.Master);
        Restore(_slave, state.Slave);
        Intr = false;
        Update(); // a connected worker asks for the window again if a request is pending
        return true;
    }

    private static PicChipState Save(Pic8259 p) => new(p.Irr, p.Isr, p.Imr, p.LastInput, p.Elcr, p.LowestPriority, p.VectorBase, p.InitState, p.Icw3,
        (byte)((p.NeedIcw4 ? 1 : 0) | (p.SingleMode ? 2 : 0) | (p.AutoEoi ? 4 : 0) | (p.RotateOnAutoEoi ? 8 : 0)
            | (p.SpecialFullyNested ? 16 : 0) | (p.SpecialMask ? 32 : 0) | (p.ReadIsr ? 64 : 0) | (p.Poll ? 128 : 0)));

    private static void Restore(Pic8259 p, PicChipState s)
    {
        (p.Irr, p.Isr, p.Imr, p.LastInput, p.VectorBase, p.Icw3) = (s.Irr, s.Isr, s.Imr, s.LastInput, (byte)(s.VectorBase & 0xF8), s.Icw3);
        p.WriteElcr(s.Elcr);
        p.LowestPriority = (byte)(s.LowestPriority & 7);
        p.InitState = s.InitState <= 3 ? s.InitState : (byte)0;
        p.NeedIcw4 = (s.Flags & 1) != 0;
        p.SingleMode = (s.Flags & 2) != 0;
        p.AutoEoi = (s.Flags & 4) != 0;
        p.RotateOnAutoEoi = (s.Flags & 8) != 0;
        p.SpecialFullyNested = (s.Flags & 16) != 0;
        p.SpecialMask = (s.Flags & 32) != 0;
        p.ReadIsr = (s.Flags & 64) != 0;
        p.Poll = (s.Flags & 128) != 0;
    }
}

/// <summary>One 8259A's registers; <see cref="Flags"/> packs ICW4-needed, single, AEOI, rotate-on-AEOI, SFNM, special mask, read-ISR and poll (bits 0-7).</summary>
public readonly record struct PicChipState(byte Irr, byte Isr, byte Imr, byte LastInput, byte Elcr, byte LowestPriority, byte VectorBase, byte InitState, byte Icw3, byte Flags);

/// <summary>The saved state of the two PICs.</summary>
public sealed record DualPicState(PicChipState Master, PicChipState Slave);

/// <summary>Chunk "device.pic", version 1: master then slave, ten bytes each in <see cref="PicChipState"/>'s order.</summary>
public sealed class DualPicStateCodec : StateCodec<DualPicState>
{
    public static readonly DualPicStateCodec Instance = new();

    public override string StateName => "8259 PIC pair";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, DualPicState s)
    {
        foreach (PicChipState c in (ReadOnlySpan<PicChipState>)[s.Master, s.Slave])
        {
            w.WriteBytes([c.Irr, c.Isr, c.Imr, c.LastInput, c.Elcr, c.LowestPriority, c.VectorBase, c.InitState, c.Icw3, c.Flags]);
        }
    }

    public override DualPicState Read(SavedStateReader r, int version)
    {
        PicChipState Chip()
        {
            byte[] b = r.ReadBytes(10);
            return new(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]);
        }

        PicChipState master = Chip();
        return new DualPicState(master, Chip());
    }
}
