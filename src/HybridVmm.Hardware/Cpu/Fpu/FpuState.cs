using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// The x87 FPU's architectural state (Intel SDM Vol. 1, 8.1): eight 80-bit data registers R0-R7 addressed as a
/// stack through TOP, the control word, the status word (TOP lives in its bits 13:11), the tag word and the last
/// instruction and operand pointers with the last opcode, as FNSTENV/FNSAVE store them in 32-bit protected mode.
/// Held in <see cref="CpuContext.Fpu"/>.
/// </summary>
/// <remarks>
/// The tag word is kept as one "valid" bit per physical register: the other three tag values (valid, zero, special)
/// follow from the register's contents, and FLDENV/FRSTOR/FXRSTOR likewise only take "empty or not" from a stored tag
/// (SDM Vol. 1, 8.1.7).
/// </remarks>
internal struct FpuState
{
    public const ushort InitialControl = 0x037F;

    public FpuRegisterFile R;
    public ushort Control;
    /// <summary>FSW including TOP (bits 13:11), ES (bit 7) and B (bit 15).</summary>
    public ushort Status;
    /// <summary>Bit i set: physical register i is not empty (tag ≠ 11b).</summary>
    public byte Valid;
    public ushort LastOpcode;
    public uint LastIp, LastDp;
    public ushort LastCs, LastDs;

    public int Top
    {
        readonly get => (Status >> 11) & 7;
        set => Status = (ushort)((Status & ~0x3800) | ((value & 7) << 11));
    }

    /// <summary>ST(i): the physical register TOP + i.</summary>
    [UnscopedRef]
    public ref Float80 St(int i) => ref R[(Top + i) & 7];

    public readonly bool IsEmpty(int i) => (Valid & (1 << ((Top + i) & 7))) == 0;

    public void SetValid(int i, bool valid)
    {
        int bit = 1 << ((Top + i) & 7);
        Valid = (byte)(valid ? Valid | bit : Valid & ~bit);
    }

    /// <summary>FNINIT (SDM Vol. 2A): control 037Fh, status 0, all tags empty, pointers and opcode 0; the registers keep their bits.</summary>
    public void Initialize()
    {
        Control = InitialControl;
        Status = 0;
        Valid = 0;
        LastOpcode = 0;
        LastIp = LastDp = 0;
        LastCs = LastDs = 0;
    }

    /// <summary>The full 16-bit tag word: 00 valid, 01 zero, 10 special (NaN, infinity, denormal, unsupported), 11 empty.</summary>
    public readonly ushort TagWord
    {
        get
        {
            int tw = 0;
            for (int i = 0; i < 8; i++)
            {
                int tag = (Valid & (1 << i)) == 0 ? 3 : TagOf(R[i]);
                tw |= tag << (2 * i);
            }
            return (ushort)tw;
        }
    }

    public static int TagOf(Float80 v) =>
        v.IsZero ? 1 : v.BiasedExponent == 0x7FFF || v.BiasedExponent == 0 || (v.Significand & Float80.IntegerBit) == 0 ? 2 : 0;

    /// <summary>Loads a tag word: only "empty" (11b) or not counts.</summary>
    public void SetTagWord(ushort tw)
    {
        int valid = 0;
        for (int i = 0; i < 8; i++)
        {
            if (((tw >> (2 * i)) & 3) != 3) valid |= 1 << i;
        }
        Valid = (byte)valid;
    }
}

/// <summary>R0-R7 inline.</summary>
[InlineArray(8)]
internal struct FpuRegisterFile
{
    private Float80 _element;
}

/// <summary>
/// The x87 state of <see cref="CpuState"/>: the control, status (with TOP) and full tag words, the last-instruction
/// opcode and pointers, and the physical registers R0-R7 (not ST(i): ST(i) is R[(TOP + i) mod 8]).
/// </summary>
public readonly record struct FpuSavedState(
    ushort Control, ushort Status, ushort Tag, ushort Opcode, uint Ip, ushort Cs, uint Dp, ushort Ds,
    Float80 R0, Float80 R1, Float80 R2, Float80 R3, Float80 R4, Float80 R5, Float80 R6, Float80 R7)
{
    /// <summary>The state after FNINIT with all registers zero: what a core from before the FPU restores to.</summary>
    public static FpuSavedState Initial => new(FpuState.InitialControl, 0, 0xFFFF, 0, 0, 0, 0, 0,
        default, default, default, default, default, default, default, default);

    public int Top => (Status >> 11) & 7;

    public Float80 Register(int physical) => physical switch
    {
        0 => R0, 1 => R1, 2 => R2, 3 => R3, 4 => R4, 5 => R5, 6 => R6, _ => R7,
    };

    /// <summary>ST(i).</summary>
    public Float80 St(int i) => Register((Top + i) & 7);

    internal static FpuSavedState From(in FpuState s) => new(
        s.Control, s.Status, s.TagWord, s.LastOpcode, s.LastIp, s.LastCs, s.LastDp, s.LastDs,
        s.R[0], s.R[1], s.R[2], s.R[3], s.R[4], s.R[5], s.R[6], s.R[7]);

    internal void ApplyTo(ref FpuState s)
    {
        s.Control = Control;
        s.Status = Status;
        s.SetTagWord(Tag);
        s.LastOpcode = (ushort)(Opcode & 0x7FF);
        s.LastIp = Ip;
        s.LastCs = Cs;
        s.LastDp = Dp;
        s.LastDs = Ds;
        for (int i = 0; i < 8; i++) s.R[i] = Register(i);
    }
}
