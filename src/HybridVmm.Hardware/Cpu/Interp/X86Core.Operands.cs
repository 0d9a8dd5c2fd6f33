using System.Runtime.CompilerServices;
using Iced.Intel;

namespace HybridVmm.Hardware.Cpu;

/// <summary>Register and operand access, driven by small tables indexed by Iced's enums.</summary>
public sealed partial class X86Core
{
    // Indexed by every Iced Register value, so any register a decoded instruction names is in range.
    private static readonly int RegisterCount = Enum.GetValues<Register>().Length + 1;
    private static readonly byte[] RegGpr = new byte[RegisterCount];
    private static readonly byte[] RegShift = new byte[RegisterCount];
    private static readonly uint[] RegMask = new uint[RegisterCount];
    private static readonly byte[] RegSize = new byte[RegisterCount];
    private static readonly byte[] MemSizeBytes = BuildMemorySizes();

    static X86Core()
    {
        for (int i = 0; i < 8; i++)
        {
            // AL, CL, DL, BL address bits 0-7 of registers 0-3; AH, CH, DH, BH bits 8-15 (SDM Vol. 2A, 2.1.5).
            int r8 = (int)Register.AL + i;
            RegGpr[r8] = (byte)(i & 3);
            RegShift[r8] = (byte)(i < 4 ? 0 : 8);
            RegMask[r8] = 0xff;
            RegSize[r8] = 1;

            int r16 = (int)Register.AX + i;
            RegGpr[r16] = (byte)i;
            RegMask[r16] = 0xffff;
            RegSize[r16] = 2;

            int r32 = (int)Register.EAX + i;
            RegGpr[r32] = (byte)i;
            RegMask[r32] = 0xffffffff;
            RegSize[r32] = 4;
        }
        for (Register s = Register.ES; s <= Register.GS; s++)
        {
            RegSize[(int)s] = 2;
        }
    }

    private static byte[] BuildMemorySizes()
    {
        var values = Enum.GetValues<MemorySize>();
        var table = new byte[values.Length + 1];
        foreach (MemorySize m in values)
        {
            table[(int)m] = (byte)Math.Min(255, m.GetSize());
        }
        return table;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint ReadReg(Register r)
    {
        // 32-bit registers are the common case in 32-bit code: index the file directly.
        uint r32 = (uint)(r - Register.EAX);
        if (r32 < 8)
        {
            return _ctx.Gpr[(int)r32];
        }
        int i = (int)r;
        return (_ctx.Gpr[RegGpr[i]] >> RegShift[i]) & RegMask[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteReg(Register r, uint value)
    {
        uint r32 = (uint)(r - Register.EAX);
        if (r32 < 8)
        {
            _ctx.Gpr[(int)r32] = value;
            return;
        }
        int i = (int)r;
        int shift = RegShift[i];
        uint mask = RegMask[i] << shift;
        ref uint g = ref _ctx.Gpr[RegGpr[i]];
        g = (g & ~mask) | ((value << shift) & mask);
    }

    /// <summary>
    /// The linear address of the memory operand: its effective address in its segment (SDM Vol. 3A, 3.4), base added
    /// and limit checked for the operand's size when the segment is not flat (System/X86Core.Segmentation.cs).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint Ea(ref Instruction ins)
    {
        uint offset = EffectiveOffset(ref ins);
        return _nonFlatSegments == 0 ? offset : Linear(ToSreg(ins.MemorySegment), offset, Math.Max(1, MemSize(ref ins)));
    }

    /// <summary>Effective address (offset in its segment) of the memory operand (SDM Vol. 1, 3.7.5).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint EffectiveOffset(ref Instruction ins)
    {
        uint address = ins.MemoryDisplacement32;
        Register b = ins.MemoryBase;
        Register x = ins.MemoryIndex;
        if (b != Register.None)
        {
            address += ReadReg(b);
        }
        if (x != Register.None)
        {
            address += ReadReg(x) * (uint)ins.MemoryIndexScale;
        }
        // 16-bit addressing: a 16-bit base or index, or a bare disp16 (checked last: it costs a decode).
        if ((uint)(b - Register.AX) < 8 || (uint)(x - Register.AX) < 8
            || (b == Register.None && x == Register.None && ins.MemoryDisplSize == 2))
        {
            address &= 0xffff; // 16-bit addressing (0x67 prefix) wraps at 64 KiB
        }
        return address;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MemSize(ref Instruction ins) => MemSizeBytes[(int)ins.MemorySize];

    /// <summary>Reads operand 0 (register or memory) and its size; <paramref name="ea"/> is kept for the write back.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint LoadDest(ref Instruction ins, out uint ea, out int size)
    {
        if (ins.Op0Kind == OpKind.Register)
        {
            Register r = ins.Op0Register;
            size = RegSize[(int)r];
            ea = 0;
            return ReadReg(r);
        }
        ea = Ea(ref ins);
        size = MemSize(ref ins);
        return ReadMem(ea, size);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void StoreDest(ref Instruction ins, uint ea, int size, uint value)
    {
        if (ins.Op0Kind == OpKind.Register)
        {
            WriteReg(ins.Op0Register, value);
        }
        else
        {
            WriteMem(ea, size, value);
        }
    }

    /// <summary>Size of operand 0 without reading it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int DestSize(ref Instruction ins) =>
        ins.Op0Kind == OpKind.Register ? RegSize[(int)ins.Op0Register] : MemSize(ref ins);

    /// <summary>Reads a source operand: register, memory or immediate (sign-extended immediates masked to <paramref name="size"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint ReadSource(ref Instruction ins, OpKind kind, Register reg, int size)
    {
        switch (kind)
        {
            case OpKind.Register:
                return ReadReg(reg);
            case OpKind.Memory:
                return ReadMem(Ea(ref ins), size);
            case OpKind.Immediate8:
                return ins.Immediate8;
            case OpKind.Immediate16:
                return ins.Immediate16;
            case OpKind.Immediate32:
                return ins.Immediate32;
            case OpKind.Immediate8to16:
                return (ushort)ins.Immediate8to16;
            case OpKind.Immediate8to32:
                return (uint)ins.Immediate8to32;
            default:
                return 0;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint ReadOp1(ref Instruction ins, int size) => ReadSource(ref ins, ins.Op1Kind, ins.Op1Register, size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint SizeMask(int size) => size == 4 ? 0xffffffffu : (1u << (size * 8)) - 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint SignBit(int size) => 1u << (size * 8 - 1);

    // Stack: ESP is the stack pointer of a 32-bit stack (SS.B=1), SP of a 16-bit one (SDM Vol. 1, 6.2); SS.base is
    // added when not 0.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Push(uint value, int size)
    {
        if (_stack16)
        {
            Push16(value, size);
            return;
        }
        uint esp = _ctx.Esp - (uint)size;
        WriteMem(StackAddress(esp, size), size, value);
        _ctx.Esp = esp;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint Pop(int size)
    {
        if (_stack16)
        {
            return Pop16(size);
        }
        uint esp = _ctx.Esp;
        uint value = ReadMem(StackAddress(esp, size), size);
        _ctx.Esp = esp + (uint)size;
        return value;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Push16(uint value, int size)
    {
        uint sp = (_ctx.Esp - (uint)size) & 0xFFFF;
        WriteMem(StackAddress(sp, size), size, value);
        _ctx.Esp = (_ctx.Esp & 0xFFFF0000) | sp;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private uint Pop16(int size)
    {
        uint sp = _ctx.Esp & 0xFFFF;
        uint value = ReadMem(StackAddress(sp, size), size);
        _ctx.Esp = (_ctx.Esp & 0xFFFF0000) | ((sp + (uint)size) & 0xFFFF);
        return value;
    }
}
