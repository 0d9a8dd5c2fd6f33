using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>Near branches, calls, returns and loops (SDM Vol. 2A/2B, Jcc, JMP, CALL, RET, LOOPcc).</summary>
public sealed partial class X86Core
{
    private static uint BranchTarget(ref Instruction ins) =>
        ins.Op0Kind == OpKind.NearBranch16 ? ins.NearBranch16 : ins.NearBranch32;

    private bool Jcc(ref Instruction ins)
    {
        if (Condition(ConditionByCode[(int)ins.Code]))
        {
            _ctx.Eip = BranchTarget(ref ins);
        }
        return true;
    }

    private bool Jmp(ref Instruction ins)
    {
        switch (ins.Op0Kind)
        {
            case OpKind.NearBranch32:
                _ctx.Eip = ins.NearBranch32;
                break;
            case OpKind.NearBranch16:
                _ctx.Eip = ins.NearBranch16;
                break;
            default:
                _ctx.Eip = LoadDest(ref ins, out _, out _);
                break;
        }
        return true;
    }

    private bool Call(ref Instruction ins)
    {
        uint target;
        int size;
        switch (ins.Op0Kind)
        {
            case OpKind.NearBranch32:
                target = ins.NearBranch32;
                size = 4;
                break;
            case OpKind.NearBranch16:
                target = ins.NearBranch16;
                size = 2;
                break;
            default:
                // The target is read before the push, so CALL [ESP+n] sees the caller's ESP.
                target = LoadDest(ref ins, out _, out size);
                break;
        }
        Push(_ctx.Eip, size);
        _ctx.Eip = target;
        return true;
    }

    private bool Ret(ref Instruction ins)
    {
        int size = ins.Code is Code.Retnw or Code.Retnw_imm16 ? 2 : 4;
        _ctx.Eip = Pop(size);
        if (ins.Op0Kind == OpKind.Immediate16)
        {
            AdjustStackPointer(ins.Immediate16);
        }
        return true;
    }

    private bool Loop(ref Instruction ins, Operation op)
    {
        // The counter is CX with a 16-bit address size (0x67 prefix), otherwise ECX.
        bool cx = ins.Code is Code.Loop_rel8_16_CX or Code.Loop_rel8_32_CX or Code.Loope_rel8_16_CX
            or Code.Loope_rel8_32_CX or Code.Loopne_rel8_16_CX or Code.Loopne_rel8_32_CX
            or Code.Jcxz_rel8_16 or Code.Jcxz_rel8_32;
        uint counter;
        if (op == Operation.Jecxz)
        {
            counter = cx ? _ctx.Ecx & 0xffff : _ctx.Ecx;
        }
        else if (cx)
        {
            counter = (_ctx.Ecx - 1) & 0xffff;
            _ctx.Ecx = (_ctx.Ecx & 0xffff0000) | counter;
        }
        else
        {
            counter = --_ctx.Ecx;
        }
        bool taken = op switch
        {
            Operation.Loop => counter != 0,
            Operation.Loope => counter != 0 && (_ctx.Eflags & ZF) != 0,
            Operation.Loopne => counter != 0 && (_ctx.Eflags & ZF) == 0,
            _ => counter == 0,
        };
        if (taken)
        {
            _ctx.Eip = BranchTarget(ref ins);
        }
        return true;
    }
}
