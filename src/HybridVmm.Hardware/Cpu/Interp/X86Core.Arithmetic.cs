using System.Runtime.CompilerServices;
using System.Numerics;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>Integer arithmetic and logic (SDM Vol. 2, instruction pages of the same names).</summary>
public sealed partial class X86Core
{
    // One small method per operation, each inlining Binary with a constant op so its switch folds away.
    private bool Add(ref Instruction ins) => Binary(ref ins, Operation.Add);
    private bool Adc(ref Instruction ins) => Binary(ref ins, Operation.Adc);
    private bool Sub(ref Instruction ins) => Binary(ref ins, Operation.Sub);
    private bool Sbb(ref Instruction ins) => Binary(ref ins, Operation.Sbb);
    private bool And(ref Instruction ins) => Binary(ref ins, Operation.And);
    private bool Or(ref Instruction ins) => Binary(ref ins, Operation.Or);
    private bool Xor(ref Instruction ins) => Binary(ref ins, Operation.Xor);
    private bool Cmp(ref Instruction ins) => Binary(ref ins, Operation.Cmp);
    private bool Test(ref Instruction ins) => Binary(ref ins, Operation.Test);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Binary(ref Instruction ins, Operation op)
    {
        uint a = LoadDest(ref ins, out uint ea, out int size);
        uint b = ReadOp1(ref ins, size);
        uint r;
        switch (op)
        {
            case Operation.Add: r = AddWithFlags(a, b, 0, size); break;
            case Operation.Adc: r = AddWithFlags(a, b, _ctx.Eflags & CF, size); break;
            case Operation.Sub: r = SubWithFlags(a, b, 0, size); break;
            case Operation.Sbb: r = SubWithFlags(a, b, _ctx.Eflags & CF, size); break;
            case Operation.And: r = LogicFlags(a & b, size); break;
            case Operation.Or: r = LogicFlags(a | b, size); break;
            case Operation.Xor: r = LogicFlags(a ^ b, size); break;
            case Operation.Cmp: SubWithFlags(a, b, 0, size); return true;
            default: LogicFlags(a & b, size); return true; // TEST
        }
        StoreDest(ref ins, ea, size, r);
        return true;
    }

    private bool IncDec(ref Instruction ins, bool inc)
    {
        uint a = LoadDest(ref ins, out uint ea, out int size);
        StoreDest(ref ins, ea, size, IncDecFlags(a, inc, size));
        return true;
    }

    private bool Neg(ref Instruction ins)
    {
        // NEG sets CF unless the operand is 0, which is exactly the borrow of 0 - a.
        uint a = LoadDest(ref ins, out uint ea, out int size);
        StoreDest(ref ins, ea, size, SubWithFlags(0, a, 0, size));
        return true;
    }

    private bool Not(ref Instruction ins)
    {
        uint a = LoadDest(ref ins, out uint ea, out int size);
        StoreDest(ref ins, ea, size, ~a & SizeMask(size));
        return true;
    }

    /// <summary>MUL/IMUL flags: CF=OF=overflow; SF/ZF/PF from the low half and AF=0 (undefined; QEMU's choice).</summary>
    private void MulFlags(uint low, int size, bool overflow) =>
        SetStatus(Szp(low & SizeMask(size), size) | (overflow ? CF | OF : 0));

    private bool Mul(ref Instruction ins)
    {
        uint src = LoadDest(ref ins, out _, out int size);
        switch (size)
        {
            case 1:
                {
                    uint r = (_ctx.Eax & 0xff) * src;
                    WriteReg(Register.AX, r);
                    MulFlags(r, 1, (r >> 8) != 0);
                    break;
                }
            case 2:
                {
                    uint r = (_ctx.Eax & 0xffff) * src;
                    WriteReg(Register.AX, r);
                    WriteReg(Register.DX, r >> 16);
                    MulFlags(r, 2, (r >> 16) != 0);
                    break;
                }
            default:
                {
                    ulong r = (ulong)_ctx.Eax * src;
                    _ctx.Eax = (uint)r;
                    _ctx.Edx = (uint)(r >> 32);
                    MulFlags((uint)r, 4, (r >> 32) != 0);
                    break;
                }
        }
        return true;
    }

    private bool Imul(ref Instruction ins)
    {
        if (ins.OpCount == 1)
        {
            uint src = LoadDest(ref ins, out _, out int size);
            switch (size)
            {
                case 1:
                    {
                        int r = (sbyte)_ctx.Eax * (sbyte)src;
                        WriteReg(Register.AX, (uint)r);
                        MulFlags((uint)r, 1, r != (sbyte)r);
                        break;
                    }
                case 2:
                    {
                        int r = (short)_ctx.Eax * (short)src;
                        WriteReg(Register.AX, (uint)r);
                        WriteReg(Register.DX, (uint)r >> 16);
                        MulFlags((uint)r, 2, r != (short)r);
                        break;
                    }
                default:
                    {
                        long r = (long)(int)_ctx.Eax * (int)src;
                        _ctx.Eax = (uint)r;
                        _ctx.Edx = (uint)((ulong)r >> 32);
                        MulFlags((uint)r, 4, r != (int)r);
                        break;
                    }
            }
            return true;
        }

        // Two- and three-operand forms: the product is truncated to the destination size.
        Register dest = ins.Op0Register;
        int sz = RegSize[(int)dest];
        uint a = ReadOp1(ref ins, sz);
        uint b = ins.OpCount == 3 ? ReadSource(ref ins, ins.Op2Kind, Register.None, sz) : ReadReg(dest);
        uint flags = _ctx.Eflags;
        WriteReg(dest, TruncatedImul(a, b, sz, ref flags));
        _ctx.Eflags = flags;
        return true;
    }

    /// <summary>
    /// IMUL's two- and three-operand forms: the product of <paramref name="a"/> and <paramref name="b"/> truncated to
    /// the size (2 or 4 bytes), with MulFlags' status in <paramref name="flags"/> (the interpreter's and JitImul's one
    /// definition).
    /// </summary>
    internal static uint TruncatedImul(uint a, uint b, int size, ref uint flags)
    {
        long product = size == 2 ? (long)(short)a * (short)b : (long)(int)a * (int)b;
        bool overflow = size == 2 ? product != (short)product : product != (int)product;
        flags = (flags & ~StatusFlags) | Szp((uint)product & SizeMask(size), size) | (overflow ? CF | OF : 0);
        return (uint)product & SizeMask(size);
    }

    // DIV/IDIV leave all status flags unchanged (undefined in the SDM; docs/undefined-flags.md).
    private bool Div(ref Instruction ins)
    {
        uint divisor = LoadDest(ref ins, out _, out int size);
        if (_faulted) return false;
        if (divisor == 0) return Fault(ExceptionVector.DivideError);
        switch (size)
        {
            case 1:
                {
                    uint dividend = _ctx.Eax & 0xffff;
                    uint q = dividend / divisor;
                    if (q > 0xff) return Fault(ExceptionVector.DivideError);
                    WriteReg(Register.AX, ((dividend % divisor) << 8) | q);
                    break;
                }
            case 2:
                {
                    uint dividend = ((_ctx.Edx & 0xffff) << 16) | (_ctx.Eax & 0xffff);
                    uint q = dividend / divisor;
                    if (q > 0xffff) return Fault(ExceptionVector.DivideError);
                    WriteReg(Register.AX, q);
                    WriteReg(Register.DX, dividend % divisor);
                    break;
                }
            default:
                {
                    ulong dividend = ((ulong)_ctx.Edx << 32) | _ctx.Eax;
                    ulong q = dividend / divisor;
                    if (q > 0xffffffff) return Fault(ExceptionVector.DivideError);
                    _ctx.Eax = (uint)q;
                    _ctx.Edx = (uint)(dividend % divisor);
                    break;
                }
        }
        return true;
    }

    private bool Idiv(ref Instruction ins)
    {
        uint raw = LoadDest(ref ins, out _, out int size);
        if (_faulted) return false;
        if (raw == 0) return Fault(ExceptionVector.DivideError);
        switch (size)
        {
            case 1:
                {
                    int dividend = (short)_ctx.Eax;
                    int divisor = (sbyte)raw;
                    int q = dividend / divisor;
                    if (q is > sbyte.MaxValue or < sbyte.MinValue) return Fault(ExceptionVector.DivideError);
                    WriteReg(Register.AX, ((uint)(dividend % divisor) << 8) | ((uint)q & 0xff));
                    break;
                }
            case 2:
                {
                    int dividend = (int)(((_ctx.Edx & 0xffff) << 16) | (_ctx.Eax & 0xffff));
                    int divisor = (short)raw;
                    // int.MinValue / -1 would overflow the host; its quotient is out of range anyway.
                    if (divisor == -1 && dividend == int.MinValue) return Fault(ExceptionVector.DivideError);
                    int q = dividend / divisor;
                    if (q is > short.MaxValue or < short.MinValue) return Fault(ExceptionVector.DivideError);
                    WriteReg(Register.AX, (uint)q);
                    WriteReg(Register.DX, (uint)(dividend % divisor));
                    break;
                }
            default:
                {
                    long dividend = (long)(((ulong)_ctx.Edx << 32) | _ctx.Eax);
                    long divisor = (int)raw;
                    if (divisor == -1 && dividend == long.MinValue) return Fault(ExceptionVector.DivideError);
                    long q = dividend / divisor;
                    if (q is > int.MaxValue or < int.MinValue) return Fault(ExceptionVector.DivideError);
                    _ctx.Eax = (uint)q;
                    _ctx.Edx = (uint)(dividend % divisor);
                    break;
                }
        }
        return true;
    }

    private bool Xadd(ref Instruction ins)
    {
        // TEMP <- SRC + DEST; SRC <- DEST; DEST <- TEMP (so XADD r, r leaves the sum in r).
        uint a = LoadDest(ref ins, out uint ea, out int size);
        uint b = ReadReg(ins.Op1Register);
        uint sum = AddWithFlags(a, b, 0, size);
        WriteReg(ins.Op1Register, a);
        StoreDest(ref ins, ea, size, sum);
        return true;
    }

    private bool Cmpxchg(ref Instruction ins)
    {
        uint dest = LoadDest(ref ins, out uint ea, out int size);
        uint acc = _ctx.Eax & SizeMask(size);
        SubWithFlags(acc, dest, 0, size);
        if (acc == dest)
        {
            StoreDest(ref ins, ea, size, ReadReg(ins.Op1Register));
        }
        else
        {
            // The destination is written back even on failure (a locked read-modify-write), SDM Vol. 2A, CMPXCHG.
            StoreDest(ref ins, ea, size, dest);
            WriteReg(size == 1 ? Register.AL : size == 2 ? Register.AX : Register.EAX, dest);
        }
        return true;
    }

    private bool Cmpxchg8b(ref Instruction ins)
    {
        uint ea = Ea(ref ins);
        uint lo = Read32(ea);
        uint hi = Read32(ea + 4);
        if (_faulted || !ProbeWrite(ea, 8)) return false;
        if (lo == _ctx.Eax && hi == _ctx.Edx)
        {
            Write32(ea, _ctx.Ebx);
            Write32(ea + 4, _ctx.Ecx);
            _ctx.Eflags |= ZF;
        }
        else
        {
            Write32(ea, lo);
            Write32(ea + 4, hi);
            _ctx.Eax = lo;
            _ctx.Edx = hi;
            _ctx.Eflags &= ~ZF;
        }
        return true;
    }

    /// <summary>BT/BTS/BTR/BTC: CF = selected bit; other status flags unchanged (docs/undefined-flags.md).</summary>
    private bool BitTest(ref Instruction ins, Operation op)
    {
        int size = DestSize(ref ins);
        int bits = size * 8;
        uint offset = ReadOp1(ref ins, size);
        uint ea = 0;
        int bit;
        uint value;
        if (ins.Op0Kind == OpKind.Register)
        {
            bit = (int)(offset & (uint)(bits - 1));
            value = ReadReg(ins.Op0Register);
        }
        else
        {
            ea = Ea(ref ins);
            if (ins.Op1Kind == OpKind.Register)
            {
                // Register bit offsets address a bit string: signed, and may reach outside the operand
                // (SDM Vol. 2A, BT, "bit base" and table 3-2).
                int signedOffset = size == 2 ? (short)offset : (int)offset;
                ea += (uint)((signedOffset >> (size == 2 ? 4 : 5)) * size);
                bit = signedOffset & (bits - 1);
            }
            else
            {
                bit = (int)(offset & (uint)(bits - 1));
            }
            value = ReadMem(ea, size);
        }
        uint mask = 1u << bit;
        _ctx.Eflags = (_ctx.Eflags & ~CF) | ((value >> bit) & 1);
        uint result = op switch
        {
            Operation.Bts => value | mask,
            Operation.Btr => value & ~mask,
            Operation.Btc => value ^ mask,
            _ => value,
        };
        if (op != Operation.Bt)
        {
            StoreDest(ref ins, ea, size, result);
        }
        return true;
    }

    /// <summary>BSF/BSR: ZF=1 and destination unchanged for a zero source; other flags from the source (undefined).</summary>
    private bool BitScan(ref Instruction ins, bool forward)
    {
        Register dest = ins.Op0Register;
        int size = RegSize[(int)dest];
        uint src = ReadOp1(ref ins, size);
        SetStatus(Szp(src, size));
        if (src != 0)
        {
            WriteReg(dest, forward ? (uint)BitOperations.TrailingZeroCount(src) : (uint)(31 - BitOperations.LeadingZeroCount(src)));
        }
        return true;
    }
}
