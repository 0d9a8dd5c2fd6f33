using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>One instruction form (an Iced <see cref="Code"/>) the fuzzer generates, with what it knows about its operands.</summary>
internal sealed class InstructionForm
{
    public InstructionForm(Code code)
    {
        Code = code;
        OpCode = code.ToOpCode();
        Mnemonic = code.Mnemonic();
        OperandKinds = new OpCodeOperandKind[OpCode.OpCount];
        for (int i = 0; i < OperandKinds.Length; i++) OperandKinds[i] = OpCode.GetOpKind(i);
        OperandBits = ComputeOperandBits();
        IsString = Array.Exists(OperandKinds, k => k is OpCodeOperandKind.seg_rSI or OpCodeOperandKind.es_rDI or OpCodeOperandKind.seg_rBX_al);
        HasMemory = Array.Exists(OperandKinds, k => k is OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem
            or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.mem or OpCodeOperandKind.mem_offs);
        NativeEligible = OpCode.Mode64 && !IsString && InstructionCatalogue.NativeMnemonics.Contains(Mnemonic)
            && Array.TrueForAll(OperandKinds, k => k is not (OpCodeOperandKind.mem or OpCodeOperandKind.mem_offs));
        // (r/m operands are memory in part of the native cases too: see CaseGenerator.NativeMemoryPercent.)
    }

    public Code Code { get; }
    public OpCodeInfo OpCode { get; }
    public Mnemonic Mnemonic { get; }
    public OpCodeOperandKind[] OperandKinds { get; }
    /// <summary>Size of the main data operand in bits (8, 16 or 32).</summary>
    public int OperandBits { get; }
    public bool IsString { get; }
    public bool HasMemory { get; }
    /// <summary>Can run on the host processor in 64-bit mode with the same encoding and register operands only.</summary>
    public bool NativeEligible { get; }

    private int ComputeOperandBits()
    {
        foreach (OpCodeOperandKind k in OperandKinds)
        {
            switch (k)
            {
                case OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode or OpCodeOperandKind.al:
                    return 8;
                case OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r16_rm or OpCodeOperandKind.ax:
                    return 16;
                case OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_opcode or OpCodeOperandKind.r32_rm or OpCodeOperandKind.eax:
                    return 32;
            }
        }
        return OpCode.OperandSize switch { 16 => 16, 32 => 32, _ => Mnemonic is Mnemonic.Cbw or Mnemonic.Cwd ? 16 : 32 };
    }

    public override string ToString() => Code.ToString();
}

/// <summary>The instruction forms under test: every legacy 32-bit-mode form of the integer instructions the core implements.</summary>
internal static class InstructionCatalogue
{
    public static readonly HashSet<Mnemonic> Mnemonics =
    [
        Mnemonic.Mov, Mnemonic.Movzx, Mnemonic.Movsx, Mnemonic.Lea, Mnemonic.Xchg, Mnemonic.Push, Mnemonic.Pop,
        Mnemonic.Add, Mnemonic.Adc, Mnemonic.Sub, Mnemonic.Sbb, Mnemonic.And, Mnemonic.Or, Mnemonic.Xor, Mnemonic.Cmp, Mnemonic.Test,
        Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg, Mnemonic.Not, Mnemonic.Mul, Mnemonic.Imul, Mnemonic.Div, Mnemonic.Idiv,
        Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr, Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Shld, Mnemonic.Shrd,
        Mnemonic.Cbw, Mnemonic.Cwde, Mnemonic.Cwd, Mnemonic.Cdq,
        Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne, Mnemonic.Jbe, Mnemonic.Ja,
        Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge, Mnemonic.Jle, Mnemonic.Jg,
        Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe, Mnemonic.Seta,
        Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg,
        Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne, Mnemonic.Cmovbe, Mnemonic.Cmova,
        Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp, Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg,
        Mnemonic.Jmp, Mnemonic.Call, Mnemonic.Ret, Mnemonic.Loop, Mnemonic.Loope, Mnemonic.Loopne, Mnemonic.Jecxz,
        Mnemonic.Bt, Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc, Mnemonic.Bsf, Mnemonic.Bsr,
        Mnemonic.Bswap, Mnemonic.Xadd, Mnemonic.Cmpxchg, Mnemonic.Cmpxchg8b,
        Mnemonic.Movsb, Mnemonic.Movsw, Mnemonic.Movsd, Mnemonic.Stosb, Mnemonic.Stosw, Mnemonic.Stosd,
        Mnemonic.Lodsb, Mnemonic.Lodsw, Mnemonic.Lodsd, Mnemonic.Cmpsb, Mnemonic.Cmpsw, Mnemonic.Cmpsd,
        Mnemonic.Scasb, Mnemonic.Scasw, Mnemonic.Scasd, Mnemonic.Xlatb,
        Mnemonic.Daa, Mnemonic.Das, Mnemonic.Aaa, Mnemonic.Aas, Mnemonic.Aam, Mnemonic.Aad,
        Mnemonic.Enter, Mnemonic.Leave, Mnemonic.Pusha, Mnemonic.Pushad, Mnemonic.Popa, Mnemonic.Popad,
        Mnemonic.Pushf, Mnemonic.Pushfd, Mnemonic.Popf, Mnemonic.Popfd, Mnemonic.Lahf, Mnemonic.Sahf,
        Mnemonic.Clc, Mnemonic.Stc, Mnemonic.Cmc, Mnemonic.Cld, Mnemonic.Std, Mnemonic.Cli, Mnemonic.Sti, Mnemonic.Nop,
    ];

    /// <summary>Instructions that behave the same in 64-bit mode with 32-bit (or 8/16-bit) operands: checked on the host CPU.</summary>
    public static readonly HashSet<Mnemonic> NativeMnemonics =
    [
        Mnemonic.Add, Mnemonic.Adc, Mnemonic.Sub, Mnemonic.Sbb, Mnemonic.And, Mnemonic.Or, Mnemonic.Xor, Mnemonic.Cmp, Mnemonic.Test,
        Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg, Mnemonic.Not, Mnemonic.Mul, Mnemonic.Imul, Mnemonic.Div, Mnemonic.Idiv,
        Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr, Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Shld, Mnemonic.Shrd,
        Mnemonic.Bt, Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc, Mnemonic.Bsf, Mnemonic.Bsr,
        Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe, Mnemonic.Seta,
        Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg,
        Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne, Mnemonic.Cmovbe, Mnemonic.Cmova,
        Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp, Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg,
        Mnemonic.Bswap, Mnemonic.Xadd, Mnemonic.Cmpxchg, Mnemonic.Movzx, Mnemonic.Movsx, Mnemonic.Mov, Mnemonic.Xchg,
        Mnemonic.Cbw, Mnemonic.Cwde, Mnemonic.Cwd, Mnemonic.Cdq, Mnemonic.Lahf, Mnemonic.Sahf, Mnemonic.Clc, Mnemonic.Stc, Mnemonic.Cmc,
    ];

    /// <summary>Every candidate form: valid in 32-bit mode, legacy encoding, 32-bit addressing, operands the generator can build.</summary>
    public static readonly InstructionForm[] Candidates = BuildCandidates();

    private static InstructionForm[] BuildCandidates()
    {
        var list = new List<InstructionForm>();
        foreach (Code code in Enum.GetValues<Code>())
        {
            if (code == Code.INVALID || !Mnemonics.Contains(code.Mnemonic())) continue;
            OpCodeInfo op = code.ToOpCode();
            if (!op.Mode32 || op.Encoding != EncodingKind.Legacy || op.AddressSize == 16 || op.AddressSize == 64) continue;
            if (op.OperandSize == 64) continue;
            // Far JMP/CALL through memory load CS from a descriptor table: the fuzzer's machines have none (the core
            // then takes the boot state's flat selectors, Unicorn faults). SegmentationTests and the `segments`
            // guest check them against the SDM and QEMU instead.
            if (code is Code.Jmp_m1616 or Code.Jmp_m1632 or Code.Call_m1616 or Code.Call_m1632) continue;
            var form = new InstructionForm(code);
            if (Array.TrueForAll(form.OperandKinds, CaseGenerator.CanGenerate)) list.Add(form);
        }
        return list.ToArray();
    }
}
