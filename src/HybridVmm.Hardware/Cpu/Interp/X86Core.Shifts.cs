using System.Runtime.CompilerServices;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Shifts and rotates (SDM Vol. 2B, SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR, SHLD, SHRD). The count is masked
/// to 5 bits; a masked count of 0 changes nothing, not even flags. OF is architecturally defined only
/// for a count of 1; for other counts the same formula is applied (QEMU's behaviour, docs/undefined-flags.md).
/// </summary>
public sealed partial class X86Core
{
    private bool Shift(ref Instruction ins, Operation op)
    {
        uint a = LoadDest(ref ins, out uint ea, out int size);
        int count = (int)(ReadSource(ref ins, ins.Op1Kind, ins.Op1Register, 1) & 0x1f);
        if (count == 0)
        {
            return true;
        }
        uint flags = _ctx.Eflags;
        uint r = ShiftResult(op, a, count, size, ref flags);
        _ctx.Eflags = flags;
        StoreDest(ref ins, ea, size, r);
        return true;
    }

    /// <summary>
    /// The result of shift or rotate <paramref name="op"/> of <paramref name="a"/> by <paramref name="count"/> (already
    /// masked to 5 bits; 0 changes nothing), and the flags it leaves in <paramref name="flags"/>: the interpreter's and
    /// the translator's (JitShift) one definition.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint ShiftResult(Operation op, uint a, int count, int size, ref uint flags)
    {
        if (count == 0)
        {
            return a;
        }
        int bits = size * 8;
        uint mask = SizeMask(size);
        uint sign = SignBit(size);
        uint r;
        switch (op)
        {
            case Operation.Shl:
                {
                    // Shift by count-1 first so the last bit shifted out (CF) is the top bit; counts past
                    // the operand width shift everything out and leave CF=0.
                    ulong t = (ulong)a << (count - 1);
                    uint cf = (uint)(t >> (bits - 1)) & 1;
                    r = (uint)(t << 1) & mask;
                    uint of = (((r & sign) != 0 ? 1u : 0u) ^ cf) != 0 ? OF : 0;
                    flags = (flags & ~StatusFlags) | Szp(r, size) | cf | of;
                    break;
                }
            case Operation.Shr:
                {
                    uint t = a >> (count - 1);
                    r = t >> 1;
                    // Count 1: OF = MSB of the original operand; larger counts give 0.
                    uint of = ((t ^ r) & sign) != 0 ? OF : 0;
                    flags = (flags & ~StatusFlags) | Szp(r, size) | (t & 1) | of;
                    break;
                }
            case Operation.Sar:
                {
                    int s = size == 1 ? (sbyte)a : size == 2 ? (short)a : (int)a;
                    int t = s >> (count - 1);
                    r = (uint)(t >> 1) & mask;
                    flags = (flags & ~StatusFlags) | Szp(r, size) | ((uint)t & 1); // OF = 0
                    break;
                }
            case Operation.Rol:
                {
                    int n = count & (bits - 1);
                    r = n == 0 ? a : ((a << n) | (a >> (bits - n))) & mask;
                    uint cf = r & 1;
                    uint of = (((r & sign) != 0 ? 1u : 0u) ^ cf) != 0 ? OF : 0;
                    flags = (flags & ~(CF | OF)) | cf | of;
                    break;
                }
            case Operation.Ror:
                {
                    int n = count & (bits - 1);
                    r = n == 0 ? a : ((a >> n) | (a << (bits - n))) & mask;
                    uint cf = (r & sign) != 0 ? CF : 0;
                    uint of = ((r ^ (r << 1)) & sign) != 0 ? OF : 0;
                    flags = (flags & ~(CF | OF)) | cf | of;
                    break;
                }
            default:
                {
                    // RCL/RCR rotate the (size+1)-bit value CF:dest; 8- and 16-bit counts are taken mod 9 / 17.
                    int n = size == 1 ? count % 9 : size == 2 ? count % 17 : count;
                    if (n == 0)
                    {
                        return a;
                    }
                    int width = bits + 1;
                    ulong wideMask = (1UL << width) - 1;
                    ulong v = ((ulong)(flags & CF) << bits) | a;
                    v = op == Operation.Rcl
                        ? ((v << n) | (v >> (width - n))) & wideMask
                        : ((v >> n) | (v << (width - n))) & wideMask;
                    r = (uint)v & mask;
                    uint cf = (uint)(v >> bits) & 1;
                    uint of = ((a ^ r) & sign) != 0 ? OF : 0;
                    flags = (flags & ~(CF | OF)) | cf | of;
                    break;
                }
        }
        return r;
    }

    private bool DoubleShift(ref Instruction ins, bool left)
    {
        uint a = LoadDest(ref ins, out uint ea, out int size);
        uint b = ReadReg(ins.Op1Register);
        int count = (int)(ReadSource(ref ins, ins.Op2Kind, ins.Op2Register, 1) & 0x1f);
        if (count == 0)
        {
            return true;
        }
        // "previous" is the operand after count-1 shifts: CF is the bit it shifts out next, and OF
        // compares its sign with the result's (for count 1 that is the SDM's sign-change rule; for
        // larger counts OF is undefined and this matches QEMU).
        uint r, cf, previous;
        if (size == 4)
        {
            if (left)
            {
                ulong t = ((ulong)a << 32) | b;
                previous = (uint)((t << (count - 1)) >> 32);
                r = (uint)((t << count) >> 32);
                cf = previous >> 31;
            }
            else
            {
                ulong t = ((ulong)b << 32) | a;
                previous = (uint)(t >> (count - 1));
                r = (uint)(t >> count);
                cf = previous & 1;
            }
        }
        else
        {
            // 16-bit counts above 16 are undefined; we shift through dest:src:dest like QEMU.
            if (left)
            {
                ulong t = ((ulong)a << 32) | ((ulong)b << 16) | a;
                previous = (uint)((t << (count - 1)) >> 32) & 0xffff;
                r = (uint)((t << count) >> 32) & 0xffff;
                cf = previous >> 15;
            }
            else
            {
                ulong t = a | ((ulong)b << 16) | ((ulong)a << 32);
                previous = (uint)(t >> (count - 1)) & 0xffff;
                r = (uint)(t >> count) & 0xffff;
                cf = previous & 1;
            }
        }
        uint of = ((previous ^ r) & SignBit(size)) != 0 ? OF : 0;
        SetStatus(Szp(r, size) | cf | of);
        StoreDest(ref ins, ea, size, r);
        return true;
    }
}
