using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The system-segment and descriptor-inspection instructions (SDM Vol. 2A/2B): LLDT, SLDT, LTR, STR, LAR, LSL, VERR,
/// VERW and ARPL, and the machine-status-word instructions SMSW, LMSW and CLTS.
/// </summary>
public sealed partial class X86Core
{
    private const uint TypeLdt = 0x2, TypeTss16Available = 0x1, TypeTss32Available = 0x9, TypeTssBusyBit = 0x2;

    /// <summary>A 16-bit selector operand: a register's low 16 bits or a word in memory.</summary>
    private ushort ReadSelectorOperand(ref Instruction ins) =>
        (ushort)(ins.Op0Kind == OpKind.Register ? ReadReg(ins.Op0Register) : Read16(Ea(ref ins)));

    /// <summary>SLDT, STR, SMSW: a register destination takes the zero-extended value (SMSW r32: all of CR0); memory takes a word.</summary>
    private bool StoreSystemWord(ref Instruction ins, uint value, bool fullInRegister = false)
    {
        if (ins.Op0Kind == OpKind.Register)
        {
            Register r = ins.Op0Register;
            WriteReg(r, RegSize[(int)r] == 4 ? (fullInRegister ? value : value & 0xFFFF) : value & 0xFFFF);
        }
        else
        {
            Write16(Ea(ref ins), value);
        }
        return !_faulted;
    }

    private bool Lldt(ref Instruction ins)
    {
        if (_ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection, 0);
        ushort selector = ReadSelectorOperand(ref ins);
        if (_faulted) return false;
        if ((selector & ~3) == 0)
        {
            _ctx.Ldtr = new SegmentRegister(selector, 0, 0, 0); // a null LDTR: any LDT reference then faults
            return true;
        }
        if ((selector & 4) != 0 || !ReadDescriptor(selector, out uint low, out uint high, out _))
        {
            return !_faulted && Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        }
        SegmentRegister cache = CacheOf(selector, low, high);
        if ((cache.Attributes & (AttrSystem | 0xF)) != TypeLdt) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        if ((cache.Attributes & AttrPresent) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(selector));
        _ctx.Ldtr = cache;
        return true;
    }

    private bool Ltr(ref Instruction ins)
    {
        if (_ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection, 0);
        ushort selector = ReadSelectorOperand(ref ins);
        if (_faulted) return false;
        if ((selector & ~3) == 0) return Fault(ExceptionVector.GeneralProtection, 0);
        if ((selector & 4) != 0 || !ReadDescriptor(selector, out uint low, out uint high, out uint address))
        {
            return !_faulted && Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        }
        SegmentRegister cache = CacheOf(selector, low, high);
        uint type = cache.Attributes & (AttrSystem | 0xFu);
        if (type is not (TypeTss16Available or TypeTss32Available)) return Fault(ExceptionVector.GeneralProtection, SelectorError(selector));
        if ((cache.Attributes & AttrPresent) == 0) return Fault(ExceptionVector.SegmentNotPresent, SelectorError(selector));
        // The TSS becomes busy, in the GDT and in TR's cache (SDM Vol. 2A, LTR).
        Write8(address + 5, (high >> 8) | TypeTssBusyBit);
        if (_faulted) return false;
        _ctx.Tr = cache with { Attributes = (ushort)(cache.Attributes | TypeTssBusyBit) };
        return true;
    }

    private bool Sldt(ref Instruction ins) => StoreSystemWord(ref ins, _ctx.Ldtr.Selector);

    private bool Str(ref Instruction ins) => StoreSystemWord(ref ins, _ctx.Tr.Selector);

    private bool Smsw(ref Instruction ins) => StoreSystemWord(ref ins, _ctx.Cr0, fullInRegister: true);

    /// <summary>LMSW: CR0 bits 3:0 (PE, MP, EM, TS) from the operand; PE can be set but not cleared (SDM Vol. 2A, LMSW).</summary>
    private bool Lmsw(ref Instruction ins)
    {
        if (_ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection, 0);
        ushort value = ReadSelectorOperand(ref ins);
        if (_faulted) return false;
        return WriteCr0((_ctx.Cr0 & ~0xEu) | (value & 0xFu) | (_ctx.Cr0 & 1));
    }

    private bool Clts()
    {
        if (_ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection, 0);
        _ctx.Cr0 &= ~(uint)Cr0Flags.TS;
        return true;
    }

    /// <summary>
    /// The descriptor LAR, LSL, VERR and VERW inspect, if the selector names one that is visible at the current
    /// privilege level (SDM Vol. 2A, LAR, "Operation"): not null, inside its table, and for anything but a conforming
    /// code segment, DPL ≥ CPL and DPL ≥ RPL. These instructions never fault on the selector; they clear ZF.
    /// </summary>
    private bool VisibleDescriptor(ushort selector, out SegmentRegister cache, out uint high)
    {
        cache = default;
        high = 0;
        if ((selector & ~3) == 0 || ImpliedBootGdt(selector) || !ReadDescriptor(selector, out uint low, out high, out _)) return false;
        cache = CacheOf(selector, low, high);
        ushort a = cache.Attributes;
        bool conformingCode = (a & (AttrSystem | AttrCode | AttrConforming)) == (AttrSystem | AttrCode | AttrConforming);
        int dpl = (a >> 5) & 3;
        return conformingCode || (dpl >= _ctx.Cpl && dpl >= (selector & 3));
    }

    private void SetZf(bool value) => _ctx.Eflags = value ? _ctx.Eflags | ZF : _ctx.Eflags & ~ZF;

    /// <summary>LAR and LSL: the access rights or the limit of a visible descriptor of a type the instruction accepts.</summary>
    private bool LarLsl(ref Instruction ins, bool lar)
    {
        var selector = (ushort)(ins.Op1Kind == OpKind.Register ? ReadReg(ins.Op1Register) : Read16(Ea(ref ins)));
        if (_faulted) return false;
        bool ok = VisibleDescriptor(selector, out SegmentRegister cache, out uint high);
        if (_faulted) return false;
        if (ok && (cache.Attributes & AttrSystem) == 0)
        {
            uint type = cache.Attributes & 0xFu;
            // LAR accepts TSSs, LDTs and gates; LSL only what has a limit (TSSs and LDTs), SDM Vol. 2A tables 3-52/3-55.
            ok = lar ? type is 1 or 2 or 3 or 4 or 5 or 9 or 0xB or 0xC : type is 1 or 2 or 3 or 9 or 0xB;
        }
        SetZf(ok);
        if (ok)
        {
            uint value = lar ? high & 0x00F0_FF00 : cache.Limit;
            WriteReg(ins.Op0Register, RegSize[(int)ins.Op0Register] == 2 ? value & 0xFFFF : value);
        }
        return true;
    }

    /// <summary>VERR and VERW: is the segment readable (writable) at the current privilege level.</summary>
    private bool Verify(ref Instruction ins, bool write)
    {
        ushort selector = ReadSelectorOperand(ref ins);
        if (_faulted) return false;
        bool ok = VisibleDescriptor(selector, out SegmentRegister cache, out _);
        if (_faulted) return false;
        ushort a = cache.Attributes;
        bool code = (a & AttrCode) != 0;
        ok = ok && (a & AttrSystem) != 0 && (write ? !code && (a & AttrWritable) != 0 : !code || (a & AttrReadable) != 0);
        SetZf(ok);
        return true;
    }

    /// <summary>ARPL r/m16, r16: raises the destination selector's RPL to the source's (SDM Vol. 2A, ARPL).</summary>
    private bool Arpl(ref Instruction ins)
    {
        uint destination = LoadDest(ref ins, out uint ea, out int size);
        if (_faulted) return false;
        uint source = ReadReg(ins.Op1Register);
        bool raise = (destination & 3) < (source & 3);
        SetZf(raise);
        if (raise)
        {
            StoreDest(ref ins, ea, size, (destination & ~3u) | (source & 3));
        }
        return true;
    }
}
