using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// String instructions (SDM Vol. 2B, MOVS/STOS/LODS/CMPS/SCAS and REP/REPE/REPNE). A REP instruction
/// runs all its iterations in one step and retires once (one step per iteration while single-stepping). If an iteration is refused by the second-level
/// table, the completed iterations stay visible (ESI/EDI/ECX updated) and EIP stays on the instruction,
/// exactly as a restartable fault leaves them, so the instruction resumes where it stopped.
/// </summary>
public sealed partial class X86Core
{
    private bool StringOp(ref Instruction ins, Operation op)
    {
        // A 16-bit address size (16-bit code, or a 0x67 prefix) walks SI and DI and counts with CX, each wrapping at 64 KiB.
        _stringAddress16 = ins.Op0Kind is OpKind.MemoryESDI or OpKind.MemorySegSI || ins.Op1Kind is OpKind.MemoryESDI or OpKind.MemorySegSI;
        int size = MemSize(ref ins);
        uint delta = (_ctx.Eflags & DF) != 0 ? (uint)-size : (uint)size;
        bool rep = ins.HasRepPrefix || ins.HasRepnePrefix;
        _stringSource = ToSreg(ins.MemorySegment); // DS or an override for ESI; EDI is always ES
        if (!rep)
        {
            StringIteration(op, size, delta);
            return true;
        }

        _keepProgress = true;
        bool repeWhileEqual = ins.HasRepePrefix;
        // SDM Vol. 3A 17.3.1.4: under single-stepping a REP instruction runs one iteration per step, EIP staying
        // on it while iterations remain, so the #DB trap comes after every iteration.
        bool singleStep = (_savedFlags & (uint)EFlags.TF) != 0;
        while (StringCount != 0)
        {
            if (!StringIteration(op, size, delta))
            {
                return false;
            }
            _ctx.Ecx = _stringAddress16 ? (_ctx.Ecx & 0xFFFF0000) | ((_ctx.Ecx - 1) & 0xFFFF) : _ctx.Ecx - 1;
            if (_replayCount != 0)
            {
                DiscardReplay(); // the element is committed: its completed MMIO accesses are used up
            }
            if (op is Operation.Cmps or Operation.Scas && ((_ctx.Eflags & ZF) != 0) != repeWhileEqual)
            {
                break;
            }

            if (singleStep && StringCount != 0)
            {
                _ctx.Eip = _savedEip;
                break;
            }
        }
        _keepProgress = false;
        return true;
    }

    // The segment of the ESI operand of the string instruction being executed, and its address size.
    private Sreg _stringSource;
    private bool _stringAddress16;

    /// <summary>The REP count: CX with a 16-bit address size, else ECX.</summary>
    private uint StringCount => _stringAddress16 ? _ctx.Ecx & 0xFFFF : _ctx.Ecx;

    /// <summary>An index register stepped by an element: only its low 16 bits with a 16-bit address size.</summary>
    private uint StepIndex(uint register, uint delta) =>
        _stringAddress16 ? (register & 0xFFFF0000) | ((register + delta) & 0xFFFF) : register + delta;

    /// <summary>One element; false (with nothing committed) when an access was refused.</summary>
    private bool StringIteration(Operation op, int size, uint delta)
    {
        uint esi = _stringAddress16 ? _ctx.Esi & 0xFFFF : _ctx.Esi;
        uint edi = _stringAddress16 ? _ctx.Edi & 0xFFFF : _ctx.Edi;
        // Each operand's segment is checked only by the instructions that use it (STOS/SCAS never touch DS:ESI).
        uint destination = op == Operation.Lods ? 0 : Linear(Sreg.Es, edi, size);
        switch (op)
        {
            case Operation.Movs:
                {
                    uint v = ReadMem(Linear(_stringSource, esi, size), size);
                    WriteMem(destination, size, v);
                    if (_faulted) return false;
                    _ctx.Esi = StepIndex(_ctx.Esi, delta);
                    _ctx.Edi = StepIndex(_ctx.Edi, delta);
                    return true;
                }
            case Operation.Stos:
                WriteMem(destination, size, _ctx.Eax);
                if (_faulted) return false;
                _ctx.Edi = StepIndex(_ctx.Edi, delta);
                return true;
            case Operation.Lods:
                {
                    uint v = ReadMem(Linear(_stringSource, esi, size), size);
                    if (_faulted) return false;
                    WriteAccumulator(size, v);
                    _ctx.Esi = StepIndex(_ctx.Esi, delta);
                    return true;
                }
            case Operation.Cmps:
                {
                    uint a = ReadMem(Linear(_stringSource, esi, size), size);
                    uint b = ReadMem(destination, size);
                    if (_faulted) return false;
                    SubWithFlags(a, b, 0, size);
                    _ctx.Esi = StepIndex(_ctx.Esi, delta);
                    _ctx.Edi = StepIndex(_ctx.Edi, delta);
                    return true;
                }
            default: // SCAS
                {
                    uint b = ReadMem(destination, size);
                    if (_faulted) return false;
                    SubWithFlags(_ctx.Eax & SizeMask(size), b, 0, size);
                    _ctx.Edi = StepIndex(_ctx.Edi, delta);
                    return true;
                }
        }
    }

    private void WriteAccumulator(int size, uint value)
    {
        switch (size)
        {
            case 1: _ctx.Eax = (_ctx.Eax & 0xffffff00) | (value & 0xff); break;
            case 2: _ctx.Eax = (_ctx.Eax & 0xffff0000) | (value & 0xffff); break;
            default: _ctx.Eax = value; break;
        }
    }
}
