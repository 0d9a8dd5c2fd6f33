using System.Numerics;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Expected results written directly from the SDM Vol. 2 definitions (wide signed/unsigned arithmetic and
/// the bit-by-bit loops of the SHL/ROL/RCL pseudo-code), independent of the core's bit tricks.
/// Flags the SDM leaves undefined are reported in <see cref="Result.Undefined"/> so tests can ignore them.
/// </summary>
internal static class SdmReference
{
    public readonly record struct Result(uint Value, uint Flags, uint Undefined);

    public static uint Mask(int size) => size == 4 ? 0xffffffff : (1u << (size * 8)) - 1;

    private static long Signed(uint v, int size) => size switch { 1 => (sbyte)v, 2 => (short)v, _ => (int)v };

    private static uint Szp(uint r, int size)
    {
        uint f = 0;
        if (r == 0) f |= F.ZF;
        if ((r >> (size * 8 - 1) & 1) != 0) f |= F.SF;
        if (BitOperations.PopCount(r & 0xff) % 2 == 0) f |= F.PF;
        return f;
    }

    public static Result Alu(string op, int size, uint a, uint b, uint flagsIn)
    {
        uint mask = Mask(size);
        a &= mask;
        b &= mask;
        long min = -(1L << (size * 8 - 1)), max = (1L << (size * 8 - 1)) - 1;
        long c = (flagsIn & F.CF) != 0 ? 1 : 0;
        long sa = Signed(a, size), sb = Signed(b, size);
        long unsignedResult, signedResult;
        bool af;
        uint f;
        switch (op)
        {
            case "add" or "adc":
                if (op == "add") c = 0;
                unsignedResult = (long)a + b + c;
                signedResult = sa + sb + c;
                af = (a & 15) + (b & 15) + c > 15;
                f = unsignedResult > mask ? F.CF : 0;
                break;
            case "sub" or "sbb" or "cmp":
                if (op != "sbb") c = 0;
                unsignedResult = (long)a - b - c;
                signedResult = sa - sb - c;
                af = (a & 15) - (long)(b & 15) - c < 0;
                f = unsignedResult < 0 ? F.CF : 0;
                break;
            case "inc":
                unsignedResult = (long)a + 1;
                signedResult = sa + 1;
                af = (a & 15) == 15;
                f = flagsIn & F.CF;
                break;
            case "dec":
                unsignedResult = (long)a - 1;
                signedResult = sa - 1;
                af = (a & 15) == 0;
                f = flagsIn & F.CF;
                break;
            case "neg":
                unsignedResult = -(long)a;
                signedResult = -sa;
                af = (a & 15) != 0;
                f = a != 0 ? F.CF : 0;
                break;
            default:
                {
                    uint r = op switch { "and" or "test" => a & b, "or" => a | b, _ => a ^ b };
                    return new Result(r, Szp(r, size), F.AF); // CF = OF = 0; AF undefined
                }
        }
        uint result = (uint)(unsignedResult & mask);
        f |= Szp(result, size);
        if (af) f |= F.AF;
        if (signedResult < min || signedResult > max) f |= F.OF;
        return new Result(result, f, 0);
    }

    /// <summary>SAL/SHL/SHR/SAR/ROL/ROR/RCL/RCR by the SDM Vol. 2B pseudo-code loops.</summary>
    public static Result Shift(string op, int size, uint dest, int count, uint flagsIn)
    {
        int bits = size * 8;
        uint mask = Mask(size);
        uint msb = 1u << (bits - 1);
        dest &= mask;
        uint original = dest;
        int masked = count & 0x1f;
        uint cf = flagsIn & F.CF;
        uint flags = flagsIn & F.Status;
        if (masked == 0)
        {
            return new Result(dest, flags, 0);
        }
        switch (op)
        {
            case "shl" or "shr" or "sar":
                for (int i = 0; i < masked; i++)
                {
                    if (op == "shl") { cf = (dest & msb) != 0 ? 1u : 0; dest = (dest << 1) & mask; }
                    else if (op == "shr") { cf = dest & 1; dest >>= 1; }
                    else { cf = dest & 1; dest = (dest >> 1) | (dest & msb); }
                }
                flags = Szp(dest, size) | cf;
                uint undefined = F.AF;
                if (masked == 1)
                {
                    bool of = op switch
                    {
                        "shl" => ((dest & msb) != 0) ^ (cf != 0),
                        "shr" => (original & msb) != 0,
                        _ => false,
                    };
                    if (of) flags |= F.OF;
                }
                else
                {
                    undefined |= F.OF;
                }
                if (op != "sar" && masked >= bits) undefined |= F.CF;
                return new Result(dest, flags, undefined);
            case "rol" or "ror":
                {
                    int n = size == 4 ? masked : masked % bits;
                    for (int i = 0; i < n; i++)
                    {
                        dest = op == "rol"
                            ? ((dest << 1) | ((dest & msb) != 0 ? 1u : 0)) & mask
                            : (dest >> 1) | ((dest & 1) != 0 ? msb : 0);
                    }
                    cf = op == "rol" ? dest & 1 : (dest & msb) != 0 ? 1u : 0;
                    flags = (flags & ~(F.CF | F.OF)) | cf;
                    if (masked == 1)
                    {
                        bool of = op == "rol"
                            ? ((dest & msb) != 0) ^ (cf != 0)
                            : ((dest & msb) != 0) ^ ((dest & (msb >> 1)) != 0);
                        if (of) flags |= F.OF;
                        return new Result(dest, flags, 0);
                    }
                    return new Result(dest, flags, F.OF);
                }
            default: // rcl, rcr
                {
                    int n = size == 1 ? masked % 9 : size == 2 ? masked % 17 : masked;
                    bool ofRcr = ((dest & msb) != 0) ^ (cf != 0);
                    for (int i = 0; i < n; i++)
                    {
                        if (op == "rcl")
                        {
                            uint t = (dest & msb) != 0 ? 1u : 0;
                            dest = ((dest << 1) | cf) & mask;
                            cf = t;
                        }
                        else
                        {
                            uint t = dest & 1;
                            dest = (dest >> 1) | (cf != 0 ? msb : 0);
                            cf = t;
                        }
                    }
                    flags = (flags & ~F.CF) | cf;
                    if (masked == 1)
                    {
                        bool of = op == "rcl" ? ((dest & msb) != 0) ^ (cf != 0) : ofRcr;
                        flags = (flags & ~F.OF) | (of ? F.OF : 0);
                        return new Result(dest, flags, 0);
                    }
                    return new Result(dest, flags, n == 0 ? 0 : F.OF);
                }
        }
    }
}
