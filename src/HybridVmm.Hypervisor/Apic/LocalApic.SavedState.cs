using static HybridVmm.Hypervisor.Apic.ApicRegisters;

namespace HybridVmm.Hypervisor.Apic;

/// <summary>Save and restore of the APIC's registers and timer (chunk "apic.vp{n}").</summary>
internal sealed partial class LocalApic
{
    public LocalApicState SaveState(bool extIntRequested) => new(
        BaseMsr, _id, _tpr, _ldr, _dfr, _svr, _esr, _esrPending, _icrLow, _icrHigh,
        (uint[])_irr.Clone(), (uint[])_isr.Clone(), (uint[])_tmr.Clone(), (uint[])_autoEoi.Clone(), (uint[])_lvt.Clone(),
        _initialCount, _divide, _timerStart, TimerDeadline ?? -1, extIntRequested, _core.NmiPending, _core.NmiBlocked);

    /// <summary>Puts a saved state back after checking it; null on success, otherwise why not.</summary>
    public string? RestoreState(LocalApicState s)
    {
        if (s.Irr.Length != 8 || s.Isr.Length != 8 || s.Tmr.Length != 8 || s.AutoEoi.Length != 8 || s.Lvt.Length != LvtCount)
        {
            return "local APIC state has the wrong number of IRR, ISR, TMR or LVT words";
        }

        if ((s.BaseMsr & ~(BaseAddressMask | BaseEnable | BaseBsp)) != 0 || (s.Svr & ~SvrWritable) != 0 || s.Tpr > 0xFF
            || (s.IcrLow & ~IcrLowWritable) != 0 || (s.IcrHigh & ~IcrHighWritable) != 0 || (s.Divide & ~DivideWritable) != 0)
        {
            return "local APIC state has reserved bits set";
        }

        for (int i = 0; i < LvtCount; i++)
        {
            if ((s.Lvt[i] & ~LvtWritable[i]) != 0)
            {
                return $"local APIC LVT entry {i} has reserved bits set";
            }
        }

        BaseMsr = s.BaseMsr;
        _id = s.Id;
        (_tpr, _ldr, _dfr, _svr, _esr, _esrPending, _icrLow, _icrHigh) = (s.Tpr, s.Ldr, s.Dfr, s.Svr, s.Esr, s.EsrPending, s.IcrLow, s.IcrHigh);
        s.Irr.CopyTo(_irr, 0);
        s.Isr.CopyTo(_isr, 0);
        s.Tmr.CopyTo(_tmr, 0);
        s.AutoEoi.CopyTo(_autoEoi, 0);
        s.Lvt.CopyTo(_lvt, 0);
        (_initialCount, _divide, _timerStart) = (s.InitialCount, s.Divide, s.TimerStart);
        TimerDeadline = s.TimerDeadline < 0 ? null : s.TimerDeadline;
        _core.RestoreNmiState(s.NmiPending, s.NmiBlocked);
        _core.LocalInterruptsChanged();
        return null;
    }
}
