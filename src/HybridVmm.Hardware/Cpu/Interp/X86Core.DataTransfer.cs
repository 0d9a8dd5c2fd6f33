using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>MOV family, exchange, conversions, conditional moves and byte swaps.</summary>
public sealed partial class X86Core
{
    private bool Mov(ref Instruction ins)
    {
        if (ins.Op0Kind == OpKind.Register)
        {
            Register r = ins.Op0Register;
            WriteReg(r, ReadOp1(ref ins, RegSize[(int)r]));
        }
        else
        {
            uint ea = Ea(ref ins);
            int size = MemSize(ref ins);
            WriteMem(ea, size, ReadOp1(ref ins, size));
        }
        return true;
    }

    private bool MovExtend(ref Instruction ins, bool signExtend)
    {
        int srcSize = ins.Op1Kind == OpKind.Register ? RegSize[(int)ins.Op1Register] : MemSize(ref ins);
        uint v = ReadOp1(ref ins, srcSize);
        if (signExtend)
        {
            v = srcSize == 1 ? (uint)(sbyte)v : (uint)(short)v;
        }
        WriteReg(ins.Op0Register, v);
        return true;
    }

    private bool Lea(ref Instruction ins)
    {
        WriteReg(ins.Op0Register, EffectiveOffset(ref ins)); // LEA: the offset, no segment
        return true;
    }

    private bool Xchg(ref Instruction ins)
    {
        uint a = LoadDest(ref ins, out uint ea, out int size);
        uint b = ReadOp1(ref ins, size);
        if (ins.Op1Kind == OpKind.Register)
        {
            WriteReg(ins.Op1Register, a);
        }
        StoreDest(ref ins, ea, size, b);
        return true;
    }

    private bool MovSreg(ref Instruction ins)
    {
        if (ins.Op0Register.IsSegmentRegister())
        {
            // The descriptor load and its checks: System/X86Core.Segmentation.cs.
            // Segment registers are not in the rollback snapshot, so nothing is loaded when the read was refused.
            int size = ins.Op1Kind == OpKind.Register ? RegSize[(int)ins.Op1Register] : 2;
            uint selector16 = ReadOp1(ref ins, size);
            if (_faulted) return false;
            Sreg target = ToSreg(ins.Op0Register);
            return LoadDataSegment(target, (ushort)selector16) && (target != Sreg.Ss || BeginMovSsShadow());
        }
        uint selector = ReadSegment(ins.Op1Register);
        if (ins.Op0Kind == OpKind.Register)
        {
            // A 32-bit register destination receives the zero-extended selector (SDM Vol. 2B, MOV).
            WriteReg(ins.Op0Register, selector);
        }
        else
        {
            Write16(Ea(ref ins), selector);
        }
        return true;
    }

    /// <summary>MOV to and from CR0, CR2, CR3 and CR4 (SDM Vol. 2B, MOV—Move to/from Control Registers): ring 0 only.</summary>
    private bool MovCr(ref Instruction ins)
    {
        if (_ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection);
        if (ins.Code == Code.Mov_r32_cr)
        {
            switch (ins.Op1Register)
            {
                case Register.CR0: WriteReg(ins.Op0Register, _ctx.Cr0); return true;
                case Register.CR2: WriteReg(ins.Op0Register, _ctx.Cr2); return true;
                case Register.CR3: WriteReg(ins.Op0Register, _ctx.Cr3); return true;
                case Register.CR4: WriteReg(ins.Op0Register, _ctx.Cr4); return true;
                default: return UndefinedOpcode();
            }
        }
        uint v = ReadReg(ins.Op1Register);
        switch (ins.Op0Register)
        {
            case Register.CR0: return WriteCr0(v);
            case Register.CR2: _ctx.Cr2 = v; return true;
            case Register.CR3:
                if (PaePaging(_ctx.Cr0, _ctx.Cr4) && !PdptesValid(v)) return Fault(ExceptionVector.GeneralProtection);
                _ctx.Cr3 = v;
                FlushTlb(keepGlobal: true); // SDM Vol. 3A, 4.10.4.1: global pages survive a CR3 load
                return true;
            case Register.CR4: return WriteCr4(v);
            default: return UndefinedOpcode();
        }
    }

    private const uint Cr0Defined = (uint)(Cr0Flags.PE | Cr0Flags.MP | Cr0Flags.EM | Cr0Flags.TS | Cr0Flags.ET | Cr0Flags.NE
        | Cr0Flags.WP | Cr0Flags.AM | Cr0Flags.NW | Cr0Flags.CD | Cr0Flags.PG);

    /// <summary>The CR4 bits this core implements; setting any other is #GP(0), as for a feature CPUID does not report.</summary>
    private const uint Cr4Supported = (uint)(Cr4Flags.PSE | Cr4Flags.PAE | Cr4Flags.PGE | Cr4Flags.OSFXSR | Cr4Flags.SMEP | Cr4Flags.SMAP);

    private bool WriteCr0(uint value)
    {
        // SDM Vol. 3A, 2.5 and Vol. 2B, MOV CR: reserved bits of CR0[31:0] are ignored; PG without PE and NW without CD
        // are #GP(0). ET is hardwired to 1. Clearing PE enters real-address mode (SDM Vol. 3A, 10.9.2): the segment
        // caches keep what they hold until a segment register is loaded, which then loads selector × 16.
        value = (value & Cr0Defined) | (uint)Cr0Flags.ET;
        if ((value & (Cr0Pe | Cr0Pg)) == Cr0Pg) return Fault(ExceptionVector.GeneralProtection);
        if ((value & (uint)(Cr0Flags.NW | Cr0Flags.CD)) == (uint)Cr0Flags.NW) return Fault(ExceptionVector.GeneralProtection);
        uint old = _ctx.Cr0;
        // PAE paging in use after it, and PG, CD or NW changed: the PDPTEs are loaded, and checked (SDM Vol. 3A, 4.4.1).
        if (PaePaging(value, _ctx.Cr4) && ((old ^ value) & (uint)(Cr0Flags.PG | Cr0Flags.CD | Cr0Flags.NW)) != 0 && !PdptesValid(_ctx.Cr3))
        {
            return Fault(ExceptionVector.GeneralProtection);
        }
        _ctx.Cr0 = value;
        PagingControlChanged(old, _ctx.Cr4);
        if (((old ^ value) & Cr0Pe) != 0) CodeMappingChanged(); // interrupts now go through the IDT or the IVT
        return ((old ^ value) & Cr0InterceptMask) == 0 || ControlRegisterWritten(0, old, value);
    }

    private bool WriteCr4(uint value)
    {
        if ((value & ~Cr4Supported) != 0) return Fault(ExceptionVector.GeneralProtection);
        uint old = _ctx.Cr4;
        if (PaePaging(_ctx.Cr0, value) && ((old ^ value) & (Cr4Pae | Cr4Pge | Cr4Pse | Cr4Smep)) != 0 && !PdptesValid(_ctx.Cr3))
        {
            return Fault(ExceptionVector.GeneralProtection);
        }
        _ctx.Cr4 = value;
        PagingControlChanged(_ctx.Cr0, old);
        if (((old ^ value) & (Cr4Smep | Cr4Smap)) != 0)
        {
            UpdateAccessRights();
            CodeMappingChanged(); // the run loop's cached code page was checked under the old SMEP
        }
        return ((old ^ value) & Cr4InterceptMask) == 0 || ControlRegisterWritten(4, old, value);
    }

    /// <summary>
    /// The hypervisor's share of CR0 and CR4, as VMX's CR0 and CR4 guest/host masks are (SDM Vol. 3C, 25.6.6): a write
    /// that changes a bit set here ends in <see cref="CpuExitReason.ControlRegisterWrite"/>. Unlike VMX, which exits
    /// before the instruction for the hypervisor to emulate it, the core applies the write and retires the instruction
    /// first: the hypervisor takes note of the new mode and accounts for the exit. 0 (the default): no exit.
    /// </summary>
    public uint Cr0InterceptMask { get; set; }

    /// <inheritdoc cref="Cr0InterceptMask"/>
    public uint Cr4InterceptMask { get; set; }

    /// <summary>The write has retired; the run loop returns the exit after it (and after a single-step trap, if TF was set).</summary>
    private bool ControlRegisterWritten(byte register, uint old, uint value)
    {
        _exit = new CpuExit(CpuExitReason.ControlRegisterWrite, Value: value, Vector: register, ErrorCode: old);
        return false;
    }

    /// <summary>INVLPG m (SDM Vol. 2A): ring 0 only; drops the TLB entry of the page holding the operand's linear address.</summary>
    private bool Invlpg(ref Instruction ins)
    {
        if (_ctx.Cpl != 0) return Fault(ExceptionVector.GeneralProtection);
        InvalidatePage(Ea(ref ins));
        return true;
    }

    private bool Cbw() { _ctx.Eax = (_ctx.Eax & 0xffff0000) | ((uint)(int)(sbyte)_ctx.Eax & 0xffff); return true; }

    private bool Cwde() { _ctx.Eax = (uint)(short)_ctx.Eax; return true; }

    private bool Cwd()
    {
        _ctx.Edx = (_ctx.Edx & 0xffff0000) | ((_ctx.Eax & 0x8000) != 0 ? 0xffffu : 0);
        return true;
    }

    private bool Cdq() { _ctx.Edx = (uint)((int)_ctx.Eax >> 31); return true; }

    private bool Setcc(ref Instruction ins)
    {
        uint value = Condition(ConditionByCode[(int)ins.Code]) ? 1u : 0u;
        if (ins.Op0Kind == OpKind.Register)
        {
            WriteReg(ins.Op0Register, value);
        }
        else
        {
            Write8(Ea(ref ins), value);
        }
        return true;
    }

    private bool Cmovcc(ref Instruction ins)
    {
        Register r = ins.Op0Register;
        // The source is read even when the condition is false, so a bad address faults (SDM Vol. 2A, CMOVcc).
        uint value = ReadOp1(ref ins, RegSize[(int)r]);
        if (Condition(ConditionByCode[(int)ins.Code]))
        {
            WriteReg(r, value);
        }
        return true;
    }

    private bool Bswap(ref Instruction ins)
    {
        Register r = ins.Op0Register;
        // BSWAP of a 16-bit register is undefined; like Intel hardware we clear it (docs/undefined-flags.md).
        WriteReg(r, RegSize[(int)r] == 4 ? System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(ReadReg(r)) : 0);
        return true;
    }

    private bool Xlat(ref Instruction ins)
    {
        uint address = _ctx.Ebx + (_ctx.Eax & 0xff);
        if (ins.MemoryBase == Register.BX) address &= 0xffff;
        WriteReg(Register.AL, Read8(Linear(ToSreg(ins.MemorySegment), address, 1)));
        return true;
    }
}
