using static HybridVmm.Hypervisor.Apic.ApicRegisters;

namespace HybridVmm.Hypervisor.Apic;

/// <summary>The register page: reads and writes by offset (SDM Vol. 3A, table 11-1), and the ICR's sends.</summary>
internal sealed partial class LocalApic
{
    /// <summary>
    /// A read of <paramref name="size"/> bytes at <paramref name="offset"/> in the page, at virtual time <paramref name="now"/>.
    /// Anything but a 32-bit access reads 0 (QEMU's choice; the SDM makes narrower accesses model-specific).
    /// </summary>
    public uint Read(uint offset, int size, long now)
    {
        if (size != 4)
        {
            return 0;
        }

        int index = (int)((offset >> 4) & 0xFF);
        switch (index)
        {
            case Id: return (uint)_id << 24;
            case VersionIndex: return VersionValue;
            case Tpr: return _tpr;
            case Apr: return ArbitrationPriority;
            case Ppr: return ProcessorPriority;
            case Eoi: return 0; // write-only; reads 0 without an error, as on QEMU
            case Ldr: return _ldr;
            case Dfr: return _dfr | 0x0FFF_FFFF;
            case Svr: return _svr;
            case >= IsrFirst and < IsrFirst + 8: return _isr[index - IsrFirst];
            case >= TmrFirst and < TmrFirst + 8: return _tmr[index - TmrFirst];
            case >= IrrFirst and < IrrFirst + 8: return _irr[index - IrrFirst];
            case ApicRegisters.Esr: return _esr;
            case IcrLow: return _icrLow;
            case IcrHigh: return _icrHigh;
            case >= LvtFirst and < LvtFirst + LvtCount: return _lvt[index - LvtFirst];
            case ApicRegisters.InitialCount: return _initialCount;
            case CurrentCount: return CurrentCountAt(now);
            case DivideConfiguration: return _divide;
            default:
                _esrPending |= EsrIllegalRegister;
                return 0;
        }
    }

    /// <summary>A write; anything but a 32-bit access is dropped. Read-only registers ignore writes.</summary>
    public void Write(uint offset, int size, uint value, long now)
    {
        if (size != 4)
        {
            return;
        }

        int index = (int)((offset >> 4) & 0xFF);
        switch (index)
        {
            case Id:
                _id = (byte)(value >> 24);
                break;
            case Tpr:
                _tpr = value & 0xFF;
                _core.LocalInterruptsChanged();
                break;
            case Eoi:
                EndOfInterrupt();
                break;
            case Ldr:
                _ldr = value & 0xFF00_0000;
                break;
            case Dfr:
                _dfr = value | 0x0FFF_FFFF;
                break;
            case Svr:
                WriteSvr(value);
                break;
            case ApicRegisters.Esr:
                // A write latches the errors seen since the last one, and clears them (SDM Vol. 3A, 11.5.3).
                _esr = _esrPending;
                _esrPending = 0;
                break;
            case IcrLow:
                _icrLow = value & IcrLowWritable;
                Send();
                break;
            case IcrHigh:
                _icrHigh = value & IcrHighWritable;
                break;
            case >= LvtFirst and < LvtFirst + LvtCount:
                WriteLvt(index - LvtFirst, value, now);
                break;
            case ApicRegisters.InitialCount:
                LoadInitialCount(value, now);
                break;
            case DivideConfiguration:
                WriteDivide(value, now);
                break;
            case VersionIndex or Apr or Ppr or CurrentCount or (>= IsrFirst and < IrrFirst + 8):
                break;
            default:
                _esrPending |= EsrIllegalRegister;
                break;
        }
    }

    /// <summary>Clearing the software-enable bit masks every LVT entry, and they stay masked while it is clear (SDM Vol. 3A, 11.4.7.2).</summary>
    private void WriteSvr(uint value)
    {
        _svr = value & SvrWritable;
        if (!SoftwareEnabled)
        {
            for (int i = 0; i < LvtCount; i++)
            {
                _lvt[i] |= LvtMasked;
            }

            RearmTimer(_timerStart);
        }

        _core.LocalInterruptsChanged();
    }

    private void WriteLvt(int lvt, uint value, long now)
    {
        uint entry = value & LvtWritable[lvt];
        if (!SoftwareEnabled)
        {
            entry |= LvtMasked;
        }

        _lvt[lvt] = entry;
        if (lvt == LvtTimer)
        {
            RearmTimer(now);
        }
    }

    /// <summary>
    /// Writing ICR low sends the IPI it describes (SDM Vol. 3A, 11.6.1), to the partition's processors through the
    /// <see cref="Bus"/>. A lone APIC (no bus) is the only processor: it is the target of shorthand self and
    /// all-including-self, and of a physical destination equal to its ID (or 0xFF), or a logical one that matches its
    /// LDR in the DFR's model. Fixed and lowest-priority set IRR, NMI raises NMI; INIT, SIPI and SMI then reach nobody.
    /// </summary>
    private void Send()
    {
        uint mode = DeliveryMode(_icrLow);
        byte vector = (byte)_icrLow;
        if (mode is ModeFixed or ModeLowestPriority && vector < 16)
        {
            ReportError(EsrSendIllegalVector);
            return;
        }

        if (Bus is { } bus)
        {
            bus.Send(this, _icrLow, (byte)(_icrHigh >> 24));
            return;
        }

        if (!TargetsSelf())
        {
            return;
        }

        switch (mode)
        {
            case ModeFixed:
            case ModeLowestPriority:
                Accept(vector, level: false);
                break;
            case ModeNmi:
                _core.RequestNmi();
                break;
        }
    }

    private bool TargetsSelf() => ((_icrLow >> 18) & 3) switch
    {
        1 or 2 => true,  // self; all including self
        3 => false,      // all excluding self: no other processor
        _ => MatchesDestination((byte)(_icrHigh >> 24), logical: (_icrLow & (1u << 11)) != 0),
    };
}
