using System.Runtime.CompilerServices;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// Eager status-flag computation (SDM Vol. 1, 3.4.3.1 and appendix A). Every helper takes operands
/// already masked to the operand size and writes only the flags the instruction defines.
/// Choices for flags the SDM leaves undefined are listed in docs/undefined-flags.md.
/// </summary>
public sealed partial class X86Core
{
    private const uint CF = (uint)EFlags.CF;
    private const uint PF = (uint)EFlags.PF;
    private const uint AF = (uint)EFlags.AF;
    private const uint ZF = (uint)EFlags.ZF;
    private const uint SF = (uint)EFlags.SF;
    private const uint DF = (uint)EFlags.DF;
    private const uint OF = (uint)EFlags.OF;
    private const uint StatusFlags = CF | PF | AF | ZF | SF | OF;
    // Bits POPF/Eflags may set at CPL 0: status, TF, IF, DF, IOPL, NT, AC, ID (SDM Vol. 1, 3.4.3).
    private const uint EFlagsWritableMask = StatusFlags | 0x100 | 0x200 | 0x400 | 0x3000 | 0x4000 | 0x40000 | 0x200000;

    private static readonly byte[] ParityTable = BuildParity();

    private static byte[] BuildParity()
    {
        var table = new byte[256];
        for (int i = 0; i < 256; i++)
        {
            table[i] = (byte)((System.Numerics.BitOperations.PopCount((uint)i) & 1) == 0 ? PF : 0);
        }
        return table;
    }

    /// <summary>SF, ZF and PF of a result (PF looks at the low byte only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Szp(uint result, int size)
    {
        uint f = ParityTable[result & 0xff];
        if (result == 0) f |= ZF;
        if ((result & SignBit(size)) != 0) f |= SF;
        return f;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetStatus(uint flags) => _ctx.Eflags = (_ctx.Eflags & ~StatusFlags) | flags;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint AddWithFlags(uint a, uint b, uint carry, int size)
    {
        SetStatus(AddStatus(a, b, carry, size, out uint r));
        return r;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint SubWithFlags(uint a, uint b, uint borrow, int size)
    {
        SetStatus(SubStatus(a, b, borrow, size, out uint r));
        return r;
    }

    /// <summary>The status flags of ADD/ADC (<paramref name="carry"/> 0 or 1) and the result <paramref name="r"/>, masked to the size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint AddStatus(uint a, uint b, uint carry, int size, out uint r)
    {
        ulong full = (ulong)a + b + carry;
        r = (uint)full & SizeMask(size);
        uint f = Szp(r, size) | ((uint)(full >> (size * 8)) & 1) | ((a ^ b ^ r) & AF);
        if (((a ^ r) & (b ^ r) & SignBit(size)) != 0) f |= OF;
        return f;
    }

    /// <summary>The status flags of SUB/SBB/CMP (<paramref name="borrow"/> 0 or 1) and the result <paramref name="r"/>, masked to the size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint SubStatus(uint a, uint b, uint borrow, int size, out uint r)
    {
        r = (a - b - borrow) & SizeMask(size);
        uint f = Szp(r, size) | ((a ^ b ^ r) & AF);
        if ((ulong)a < (ulong)b + borrow) f |= CF;
        if (((a ^ b) & (a ^ r) & SignBit(size)) != 0) f |= OF;
        return f;
    }

    /// <summary>AND/OR/XOR/TEST: CF=OF=0, SF/ZF/PF from the result, AF undefined (cleared).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint LogicFlags(uint r, int size)
    {
        SetStatus(Szp(r, size));
        return r;
    }

    /// <summary>INC/DEC: like ADD/SUB 1 but CF is preserved (SDM Vol. 2A, INC).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint IncDecFlags(uint a, bool inc, int size)
    {
        uint cf = _ctx.Eflags & CF;
        uint r = inc ? AddWithFlags(a, 1, 0, size) : SubWithFlags(a, 1, 0, size);
        _ctx.Eflags = (_ctx.Eflags & ~CF) | cf;
        return r;
    }

    /// <summary>Evaluates a condition code (SDM Vol. 1, appendix B, table B-1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Condition(ConditionCode cc) => Condition(cc, _ctx.Eflags);

    /// <summary>Evaluates a condition code on the flags <paramref name="f"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool Condition(ConditionCode cc, uint f) => cc switch
    {
        ConditionCode.o => (f & OF) != 0,
        ConditionCode.no => (f & OF) == 0,
        ConditionCode.b => (f & CF) != 0,
        ConditionCode.ae => (f & CF) == 0,
        ConditionCode.e => (f & ZF) != 0,
        ConditionCode.ne => (f & ZF) == 0,
        ConditionCode.be => (f & (CF | ZF)) != 0,
        ConditionCode.a => (f & (CF | ZF)) == 0,
        ConditionCode.s => (f & SF) != 0,
        ConditionCode.ns => (f & SF) == 0,
        ConditionCode.p => (f & PF) != 0,
        ConditionCode.np => (f & PF) == 0,
        ConditionCode.l => ((f >> 7) & 1) != ((f >> 11) & 1),
        ConditionCode.ge => ((f >> 7) & 1) == ((f >> 11) & 1),
        ConditionCode.le => (f & ZF) != 0 || ((f >> 7) & 1) != ((f >> 11) & 1),
        ConditionCode.g => (f & ZF) == 0 && ((f >> 7) & 1) == ((f >> 11) & 1),
        _ => true,
    };
}
