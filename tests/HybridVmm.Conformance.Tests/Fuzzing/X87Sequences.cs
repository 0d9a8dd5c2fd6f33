using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// Random x87 sequences for the differential tests (X87DifferentialTests): an initial FPU image that FRSTOR loads
/// (control word with a random RC and PC and all exceptions masked, a random TOP, registers drawn from every class
/// of value with some left empty), 1-6 random x87 instructions whose memory operands sit in the data block, and
/// FNSAVE at the end. Regenerated from (seed, case) alone.
/// </summary>
internal static class X87Sequences
{
    public const int ImageOffset = 0, SaveOffset = 256, OperandOffset = 128, EaxOffset = 392, FlagsOffset = 400, InFlagsOffset = 384;
    public const int BlockSize = 512;

    /// <summary>Every x87 form the generator uses: legacy D8-DF forms with ST(i), ST(0), AX or one memory operand, except the
    /// environment instructions (they change the frame the comparison reads), FISTTP (SSE3, #UD on the core), the
    /// undocumented aliases, the 8087/287 controls and the transcendentals (approximate on the core, docs/cpu-core.md).</summary>
    public static readonly Code[] Forms = BuildForms();

    private static Code[] BuildForms()
    {
        var excluded = new HashSet<Mnemonic>
        {
            Mnemonic.Fldenv, Mnemonic.Fnstenv, Mnemonic.Fstenv, Mnemonic.Fnsave, Mnemonic.Fsave, Mnemonic.Frstor, Mnemonic.Fisttp,
            Mnemonic.Fsin, Mnemonic.Fcos, Mnemonic.Fsincos, Mnemonic.Fptan, Mnemonic.Fpatan, Mnemonic.F2xm1, Mnemonic.Fyl2x, Mnemonic.Fyl2xp1,
            Mnemonic.Fnsetpm, Mnemonic.Fsetpm, Mnemonic.Fneni, Mnemonic.Feni, Mnemonic.Fndisi, Mnemonic.Fdisi, Mnemonic.Frstpm,
            Mnemonic.Ffreep, Mnemonic.Fstpnce, Mnemonic.Fninit, Mnemonic.Finit, Mnemonic.Fstdw, Mnemonic.Fstsg,
            // Known differences from the host processor, not fixed yet (docs/conformance.md, "x87 known gaps"): FXTRACT on a full
            // stack, FPREM/FPREM1 partial reduction and condition codes with NaN operands, C0-C3 after FCLEX, C1 after FCOMI.
            Mnemonic.Fxtract, Mnemonic.Fprem, Mnemonic.Fprem1, Mnemonic.Fclex, Mnemonic.Fnclex,
            Mnemonic.Fcomi, Mnemonic.Fcomip, Mnemonic.Fucomi, Mnemonic.Fucomip,
        };
        var list = new List<Code>();
        foreach (Code code in Enum.GetValues<Code>())
        {
            OpCodeInfo op = code.ToOpCode();
            uint escape = op.OpCodeLength == 2 ? op.OpCode >> 8 : op.OpCode; // D9 E8, D8 C0+i: two-byte opcode values
            if (op.Encoding != EncodingKind.Legacy || op.Table != OpCodeTableKind.Normal || escape is < 0xD8 or > 0xDF) continue;
            if (!op.Mode32 || !op.Mode64 || excluded.Contains(code.Mnemonic())) continue;
            string name = code.ToString();
            if (name.Contains("_D") || name.Contains("_DE") || name.Contains("_DF")) continue; // FCOM2/FXCH4/FSTP1-style aliases
            list.Add(code);
        }
        return list.ToArray();
    }

    /// <summary>One sequence: the 108-byte FRSTOR image, the instructions (memory operands on <paramref name="baseRegister"/>), the operand bytes and EFLAGS.</summary>
    public sealed record Case(byte[] Block, Instruction[] Instructions, uint Eflags);

    public static Case Generate(ulong seed, long index)
    {
        var rng = new Random(unchecked((int)(seed ^ (ulong)index * 0x9E3779B97F4A7C15UL ^ (seed >> 32))) ^ (int)index);
        var block = new byte[BlockSize];
        rng.NextBytes(block.AsSpan(OperandOffset, 128));
        // Environment: FCW with all exceptions masked, random PC and RC.
        int pc = rng.Next(4) switch { 0 => 0, 1 => 2, _ => 3 };
        ushort fcw = (ushort)(0x037F & ~0x0F00 | (pc << 8) | (rng.Next(4) << 10));
        int top = rng.Next(8);
        int depth = rng.Next(9);
        ushort tag = 0xFFFF;
        for (int i = 0; i < depth; i++)
        {
            int phys = (top + i) & 7;
            tag = (ushort)(tag & ~(3 << (2 * phys))); // 00: in use (the FPU recomputes the rest)
        }
        Write32(block, 0, 0xFFFF0000u | fcw);
        Write32(block, 4, 0xFFFF0000u | (uint)(top << 11));
        Write32(block, 8, 0xFFFF0000u | tag);
        for (int i = 0; i < 8; i++)
        {
            (ulong sig, ushort se) = RandomExtended(rng);
            Write64(block, 28 + 10 * i, sig);
            Write16(block, 28 + 10 * i + 8, se);
        }
        int count = 1 + rng.Next(6);
        var instructions = new Instruction[count];
        for (int k = 0; k < count; k++)
        {
            Code code = Forms[rng.Next(Forms.Length)];
            int disp = OperandOffset + 16 * k;
            instructions[k] = Build(code, rng, disp);
            FillOperand(block, disp, code, rng);
        }
        uint eflags = 0x2 | (uint)(rng.Next(2) * 0x1) | (uint)(rng.Next(2) * 0x4) | (uint)(rng.Next(2) * 0x40) | (uint)(rng.Next(2) * 0x80) | (uint)(rng.Next(2) * 0x800) | (uint)(rng.Next(2) * 0x10);
        return new Case(block, instructions, eflags);
    }

    private static Instruction Build(Code code, Random rng, int disp)
    {
        OpCodeInfo op = code.ToOpCode();
        var regs = new List<Register>();
        bool memory = false;
        for (int i = 0; i < op.OpCount; i++)
        {
            switch (op.GetOpKind(i))
            {
                case OpCodeOperandKind.st0: regs.Add(Register.ST0); break;
                case OpCodeOperandKind.sti_opcode: regs.Add(Register.ST0 + rng.Next(8)); break;
                case OpCodeOperandKind.ax: regs.Add(Register.AX); break;
                case OpCodeOperandKind.mem: memory = true; break;
            }
        }
        // The base register is a placeholder: Rebase puts EBX (32-bit) or R15 (64-bit) in.
        if (memory) return Instruction.Create(code, new MemoryOperand(Register.EBX, disp));
        return regs.Count switch
        {
            0 => Instruction.Create(code),
            1 => Instruction.Create(code, regs[0]),
            _ => Instruction.Create(code, regs[0], regs[1]),
        };
    }

    /// <summary>The instruction with its memory base replaced (R15 for the host processor).</summary>
    public static Instruction Rebase(Instruction ins, Register baseRegister)
    {
        if (ins.Op0Kind == OpKind.Memory) ins.MemoryBase = baseRegister;
        return ins;
    }

    private static void FillOperand(byte[] block, int disp, Code code, Random rng)
    {
        var probe = Instruction.Create(code, new MemoryOperand(Register.EBX, 0L));
        MemorySize size = code.ToOpCode().OpCount > 0 && code.ToOpCode().GetOpKind(0) == OpCodeOperandKind.mem ? probe.MemorySize : MemorySize.Unknown;
        switch (size)
        {
            case MemorySize.Float32: Write32(block, disp, RandomSingle(rng)); break;
            case MemorySize.Float64: Write64(block, disp, RandomDouble(rng)); break;
            case MemorySize.Float80:
                (ulong s, ushort e) = RandomExtended(rng);
                Write64(block, disp, s);
                Write16(block, disp + 8, e);
                break;
            case MemorySize.Int16: Write16(block, disp, (ushort)RandomInteger(rng)); break;
            case MemorySize.Int32: Write32(block, disp, (uint)RandomInteger(rng)); break;
            case MemorySize.Int64: Write64(block, disp, (ulong)RandomInteger(rng)); break;
            case MemorySize.Bcd:
                for (int i = 0; i < 9; i++) block[disp + i] = (byte)((rng.Next(10) << 4) | rng.Next(10));
                block[disp + 9] = (byte)(rng.Next(2) * 0x80);
                break;
            case MemorySize.UInt16:
                // FLDCW: a random RC and PC, every exception masked (an unmasked one would end in #MF on the host).
                int pc = rng.Next(3) switch { 0 => 0, 1 => 2, _ => 3 };
                Write16(block, disp, (ushort)(0x037F & ~0x0F00 | (pc << 8) | (rng.Next(4) << 10)));
                break;
        }
    }

    private static long RandomInteger(Random rng) => rng.Next(6) switch
    {
        0 => rng.Next(-3, 4),
        1 => rng.NextInt64(),
        2 => -rng.NextInt64(),
        3 => (short)rng.Next(),
        4 => rng.Next() - (1L << 30),
        _ => rng.Next(2) == 0 ? long.MinValue : int.MinValue,
    };

    private static uint RandomSingle(Random rng)
    {
        uint sign = (uint)rng.Next(2) << 31;
        uint frac = (uint)rng.Next() & 0x7FFFFF;
        return rng.Next(8) switch
        {
            0 => sign,                                   // zero
            1 => sign | frac | 1,                        // denormal
            2 => sign | 0x7F800000,                      // infinity
            3 => sign | 0x7FC00000 | frac,               // QNaN
            4 => sign | 0x7F800000 | (frac >> 1) | 1,    // SNaN
            5 => sign | ((uint)rng.Next(120, 135) << 23) | (frac & 0x7FFF00), // small integers and halves
            _ => sign | ((uint)rng.Next(1, 255) << 23) | frac,
        };
    }

    private static ulong RandomDouble(Random rng)
    {
        ulong sign = (ulong)rng.Next(2) << 63;
        ulong frac = (ulong)rng.NextInt64() & 0xFFFFFFFFFFFFFUL;
        return rng.Next(8) switch
        {
            0 => sign,
            1 => sign | frac | 1,
            2 => sign | 0x7FF0000000000000UL,
            3 => sign | 0x7FF8000000000000UL | frac,
            4 => sign | 0x7FF0000000000000UL | (frac >> 1) | 1,
            5 => sign | ((ulong)rng.Next(1015, 1080) << 52) | (frac & 0xFFFFFFFF00000UL),
            _ => sign | ((ulong)rng.Next(1, 2047) << 52) | frac,
        };
    }

    /// <summary>An 80-bit value of a random class, biased to the edges (SDM Vol. 1, table 8-3, and the unsupported encodings).</summary>
    public static (ulong Significand, ushort SignExponent) RandomExtended(Random rng)
    {
        ushort sign = (ushort)(rng.Next(2) << 15);
        ulong frac = (ulong)rng.NextInt64() & 0x7FFFFFFFFFFFFFFFUL;
        if (rng.Next(3) == 0) frac &= ~((1UL << rng.Next(1, 63)) - 1); // short significands: exact results and ties
        return rng.Next(20) switch
        {
            0 => (0, sign),                                                  // zero
            1 => (frac | 1, sign),                                           // denormal
            2 => (0x8000000000000000UL | frac, sign),                        // pseudo-denormal
            3 => (0x8000000000000000UL, (ushort)(sign | 0x7FFF)),            // infinity
            4 => (0xC000000000000000UL | frac, (ushort)(sign | 0x7FFF)),     // QNaN
            5 => (0x8000000000000000UL | (frac >> 1) | 1, (ushort)(sign | 0x7FFF)), // SNaN
            6 => (0xC000000000000000UL, 0xFFFF),                             // real indefinite
            7 => (frac, (ushort)(sign | rng.Next(1, 0x7FFF))),               // unnormal (unsupported)
            8 => (0x8000000000000000UL | frac, (ushort)(sign | rng.Next(1, 64))),       // near the smallest normal
            9 => (0x8000000000000000UL | frac, (ushort)(sign | rng.Next(0x7FC0, 0x7FFF))), // near overflow
            10 or 11 => (0x8000000000000000UL | (frac & 0x7FFF000000000000UL), (ushort)(sign | rng.Next(0x3FFF, 0x4010))), // small integers
            _ => (0x8000000000000000UL | frac, (ushort)(sign | rng.Next(0x3FF0, 0x4050))),
        };
    }

    private static void Write16(byte[] b, int o, ushort v) => BitConverter.TryWriteBytes(b.AsSpan(o), v);
    private static void Write32(byte[] b, int o, uint v) => BitConverter.TryWriteBytes(b.AsSpan(o), v);
    private static void Write64(byte[] b, int o, ulong v) => BitConverter.TryWriteBytes(b.AsSpan(o), v);
}
