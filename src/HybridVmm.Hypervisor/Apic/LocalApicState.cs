using HybridVmm.Hardware.SavedState;

namespace HybridVmm.Hypervisor.Apic;

/// <summary>
/// One vCPU's local APIC as a value: IA32_APIC_BASE, the registers, the 256-bit IRR, ISR, TMR and the SynIC's auto-EOI
/// vectors (8 words each), the LVT, the timer (count, divisor, when counting started, next deadline or -1), and the
/// interrupt lines around it: the 8259's pending interrupt-window request (ExtINT through LINT0) and the core's NMI state.
/// </summary>
public sealed record LocalApicState(
    ulong BaseMsr, byte Id, uint Tpr, uint Ldr, uint Dfr, uint Svr, uint Esr, uint EsrPending, uint IcrLow, uint IcrHigh,
    uint[] Irr, uint[] Isr, uint[] Tmr, uint[] AutoEoi, uint[] Lvt,
    uint InitialCount, uint Divide, long TimerStart, long TimerDeadline,
    bool ExtIntRequested, bool NmiPending, bool NmiBlocked);

/// <summary>Chunk "apic.vp{n}": <see cref="LocalApicState"/>, version 1. A snapshot without it restores the power-on APIC.</summary>
public sealed class LocalApicStateCodec : StateCodec<LocalApicState>
{
    public static readonly LocalApicStateCodec Instance = new();

    public override string StateName => "local APIC";

    public override int Version => 1;

    public static string Tag(int vpIndex) => $"apic.vp{vpIndex}";

    public override void Write(SavedStateWriter w, LocalApicState s)
    {
        w.WriteUInt64(s.BaseMsr);
        w.WriteByte(s.Id);
        foreach (uint v in (ReadOnlySpan<uint>)[s.Tpr, s.Ldr, s.Dfr, s.Svr, s.Esr, s.EsrPending, s.IcrLow, s.IcrHigh])
        {
            w.WriteUInt32(v);
        }

        foreach (uint[] words in (ReadOnlySpan<uint[]>)[s.Irr, s.Isr, s.Tmr, s.AutoEoi, s.Lvt])
        {
            foreach (uint v in words)
            {
                w.WriteUInt32(v);
            }
        }

        w.WriteUInt32(s.InitialCount);
        w.WriteUInt32(s.Divide);
        w.WriteInt64(s.TimerStart);
        w.WriteInt64(s.TimerDeadline);
        w.WriteBoolean(s.ExtIntRequested);
        w.WriteBoolean(s.NmiPending);
        w.WriteBoolean(s.NmiBlocked);
    }

    public override LocalApicState Read(SavedStateReader r, int version)
    {
        ulong baseMsr = r.ReadUInt64();
        byte id = r.ReadByte();
        uint tpr = r.ReadUInt32(), ldr = r.ReadUInt32(), dfr = r.ReadUInt32(), svr = r.ReadUInt32(), esr = r.ReadUInt32(),
            esrPending = r.ReadUInt32(), icrLow = r.ReadUInt32(), icrHigh = r.ReadUInt32();
        uint[] irr = Words(r, 8), isr = Words(r, 8), tmr = Words(r, 8), autoEoi = Words(r, 8), lvt = Words(r, ApicRegisters.LvtCount);
        uint initial = r.ReadUInt32(), divide = r.ReadUInt32();
        long start = r.ReadInt64(), deadline = r.ReadInt64();
        return new LocalApicState(baseMsr, id, tpr, ldr, dfr, svr, esr, esrPending, icrLow, icrHigh, irr, isr, tmr, autoEoi, lvt,
            initial, divide, start, deadline, r.ReadBoolean(), r.ReadBoolean(), r.ReadBoolean());
    }

    private static uint[] Words(SavedStateReader r, int count)
    {
        var words = new uint[count];
        for (int i = 0; i < count; i++)
        {
            words[i] = r.ReadUInt32();
        }

        return words;
    }
}
