using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>Stack instructions (SDM Vol. 2B, PUSH, POP, PUSHA, POPA, PUSHF, POPF, ENTER, LEAVE).</summary>
public sealed partial class X86Core
{
    private static readonly byte[] StackOperandSize = OperationTable.StackOperandSize;

    private bool PushOperand(ref Instruction ins)
    {
        int size = StackOperandSize[(int)ins.Code];
        uint value;
        if (ins.Op0Kind == OpKind.Register)
        {
            Register r = ins.Op0Register;
            value = r.IsSegmentRegister() ? ReadSegment(r) : ReadReg(r);
        }
        else
        {
            value = ReadSource(ref ins, ins.Op0Kind, Register.None, size) & SizeMask(size);
        }
        Push(value, size); // PUSH ESP pushes the value before the decrement
        return true;
    }

    private bool PopOperand(ref Instruction ins)
    {
        int size = StackOperandSize[(int)ins.Code];
        uint value = Pop(size);
        if (ins.Op0Kind == OpKind.Register)
        {
            Register r = ins.Op0Register;
            if (r.IsSegmentRegister())
            {
                if (_faulted) return false; // segment registers are not in the rollback snapshot
                Sreg target = ToSreg(r);
                return LoadDataSegment(target, (ushort)value) && (target != Sreg.Ss || BeginMovSsShadow());
            }
            else
            {
                WriteReg(r, value); // POP ESP: ESP receives the popped value
            }
        }
        else
        {
            // The address is computed after ESP is incremented (SDM Vol. 2B, POP).
            WriteMem(Ea(ref ins), size, value);
        }
        return true;
    }

    private bool Pusha(ref Instruction ins)
    {
        int size = ins.Code == Code.Pushaw ? 2 : 4;
        uint esp = _ctx.Esp;
        if (_stack16)
        {
            // A 16-bit stack: each push goes through SP, which wraps at 64 KiB.
            for (int i = 0; i < 8; i++) Push(i == 4 ? esp : _ctx.Gpr[i], size);
            return !_faulted;
        }
        if (!ProbeWrite(StackAddress(esp - (uint)(8 * size), 8 * size), 8 * size)) return false;
        for (int i = 0; i < 8; i++)
        {
            // The ESP slot holds ESP as it was before the first push.
            uint value = i == 4 ? esp : _ctx.Gpr[i];
            WriteMem(StackAddress(esp - (uint)((i + 1) * size), size), size, value);
        }
        _ctx.Esp = esp - (uint)(8 * size);
        return true;
    }

    private bool Popa(ref Instruction ins)
    {
        int size = ins.Code == Code.Popaw ? 2 : 4;
        uint esp = _ctx.Esp;
        if (_stack16)
        {
            for (int i = 7; i >= 0; i--)
            {
                uint value = Pop(size);
                if (i == 4) continue; // the stored SP is skipped
                _ctx.Gpr[i] = size == 4 ? value : (_ctx.Gpr[i] & 0xffff0000) | value;
            }
            return !_faulted;
        }
        for (int i = 7; i >= 0; i--)
        {
            uint value = ReadMem(StackAddress(esp + (uint)((7 - i) * size), size), size);
            if (i == 4) continue; // the stored ESP is skipped
            if (size == 4) _ctx.Gpr[i] = value;
            else _ctx.Gpr[i] = (_ctx.Gpr[i] & 0xffff0000) | value;
        }
        _ctx.Esp = esp + (uint)(8 * size);
        return true;
    }

    private bool Pushf(ref Instruction ins)
    {
        // VM (17) and RF (16) are stored cleared (SDM Vol. 2B, PUSHF).
        uint value = _ctx.Eflags & 0x00fcffff;
        Push(ins.Code == Code.Pushfw ? value & 0xffff : value, ins.Code == Code.Pushfw ? 2 : 4);
        return true;
    }

    private bool Popf(ref Instruction ins)
    {
        // IOPL changes only at CPL 0 and IF only at CPL <= IOPL; a refused bit keeps its value without a fault
        // (System/X86Core.Privilege.cs). VM/RF/VIF/VIP stay clear.
        uint writable = FlagsWritableAtCpl();
        if (ins.Code == Code.Popfw)
        {
            uint low = Pop(2);
            if (_faulted) return false;
            writable &= 0xffff;
            _ctx.Eflags = (_ctx.Eflags & ~writable) | (low & writable) | (uint)EFlags.Reserved1;
        }
        else
        {
            uint value = Pop(4);
            if (_faulted) return false;
            _ctx.Eflags = (_ctx.Eflags & ~writable & ~(RfFlag | VmFlag)) | (value & writable) | (uint)EFlags.Reserved1;
        }
        FlagsChanged();
        return true;
    }

    private bool Lahf()
    {
        // AH <- SF:ZF:0:AF:0:PF:1:CF
        uint ah = (_ctx.Eflags & (SF | ZF | AF | PF | CF)) | 2;
        _ctx.Eax = (_ctx.Eax & 0xffff00ff) | (ah << 8);
        return true;
    }

    /// <summary>SALC (0xD6, undocumented outside 64-bit mode): AL = CF ? 0xFF : 0, flags unchanged (QEMU, AMD's manuals).</summary>
    private bool Salc()
    {
        _ctx.Eax = (_ctx.Eax & 0xffffff00) | ((_ctx.Eflags & CF) != 0 ? 0xffu : 0);
        return true;
    }

    private bool Sahf()
    {
        uint ah = (_ctx.Eax >> 8) & (SF | ZF | AF | PF | CF);
        _ctx.Eflags = (_ctx.Eflags & ~(SF | ZF | AF | PF | CF)) | ah;
        return true;
    }

    private bool Enter(ref Instruction ins)
    {
        int size = ins.Code == Code.Enterw_imm16_imm8 ? 2 : 4;
        uint allocSize = ins.Immediate16;
        int level = ins.Immediate8_2nd & 31;
        // The stack-size attribute (SS.B), not the operand size, chooses EBP/ESP or BP/SP as the frame pointer and the
        // stack pointer (SDM Vol. 2A, ENTER): an o16 ENTER on a 32-bit stack still loads all of EBP, and on a 16-bit
        // stack only BP and SP move, their high halves kept.
        uint ebp = _ctx.Ebp;
        Push(ebp, size);
        uint frameTemp = _stack16 ? _ctx.Esp & 0xFFFF : _ctx.Esp;
        if (level > 0)
        {
            for (int i = 1; i < level; i++)
            {
                ebp = _stack16 ? (ebp & 0xFFFF0000) | ((ebp - (uint)size) & 0xFFFF) : ebp - (uint)size;
                Push(ReadMem(StackAddress(_stack16 ? ebp & 0xFFFF : ebp, size), size), size);
            }
            Push(frameTemp, size);
        }
        if (_faulted) return false;
        if (_stack16)
        {
            _ctx.Ebp = (_ctx.Ebp & 0xFFFF0000) | frameTemp;
            _ctx.Esp = (_ctx.Esp & 0xFFFF0000) | ((_ctx.Esp - allocSize) & 0xFFFF);
        }
        else
        {
            _ctx.Ebp = frameTemp;
            _ctx.Esp -= allocSize;
        }
        return true;
    }

    private bool Leave(ref Instruction ins)
    {
        // ESP <- EBP follows the stack-address size, not the operand size (SDM Vol. 2A, LEAVE): SP <- BP on a 16-bit stack.
        _ctx.Esp = _stack16 ? (_ctx.Esp & 0xFFFF0000) | (_ctx.Ebp & 0xFFFF) : _ctx.Ebp;
        _ctx.Ebp = ins.Code == Code.Leavew ? (_ctx.Ebp & 0xffff0000) | Pop(2) : Pop(4);
        return true;
    }
}
