using System.Buffers.Binary;
using Iced.Intel;

namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// Builds random test cases with Iced's <see cref="Encoder"/>: random registers, flags and memory biased to
/// edge values, a random instruction form with random register, memory and immediate operands, and the
/// few pointer registers an instruction needs (stack, string, frame pointers) aimed at the memory windows.
/// </summary>
internal sealed partial class CaseGenerator
{
    private static readonly Register[] Gpr32 = [Register.EAX, Register.ECX, Register.EDX, Register.EBX, Register.ESP, Register.EBP, Register.ESI, Register.EDI];
    private static readonly Register[] Gpr16 = [Register.AX, Register.CX, Register.DX, Register.BX, Register.SP, Register.BP, Register.SI, Register.DI];
    private static readonly Register[] Gpr8 = [Register.AL, Register.CL, Register.DL, Register.BL, Register.AH, Register.CH, Register.DH, Register.BH];
    private static readonly HashSet<Mnemonic> Lockable =
    [
        Mnemonic.Add, Mnemonic.Adc, Mnemonic.And, Mnemonic.Btc, Mnemonic.Btr, Mnemonic.Bts, Mnemonic.Cmpxchg, Mnemonic.Cmpxchg8b,
        Mnemonic.Dec, Mnemonic.Inc, Mnemonic.Neg, Mnemonic.Not, Mnemonic.Or, Mnemonic.Sbb, Mnemonic.Sub, Mnemonic.Xor, Mnemonic.Xadd, Mnemonic.Xchg,
    ];
    private static readonly Register[] SegmentPrefixes = [Register.DS, Register.ES, Register.SS, Register.FS, Register.GS];
    private static readonly int[] CountEdges = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 18, 23, 24, 25, 31, 32, 33, 63, 255];

    private readonly ulong _seed;
    private readonly InstructionForm[] _forms;
    private readonly bool _native;
    private readonly SlotWriter _writer = new();
    private readonly Encoder _encoder;

    /// <param name="native">Register operands only and never ESP: the case must run on the host CPU in 64-bit mode.</param>
    public CaseGenerator(ulong seed, InstructionForm[] forms, bool native = false)
    {
        _seed = seed;
        _forms = forms;
        _native = native;
        _encoder = Encoder.Create(32, _writer);
    }

    /// <summary>Memory operands only as [disp32] (instruction sequences: register values change between instructions).</summary>
    public bool AbsoluteMemory { get; init; }

    /// <summary>The first few reasons Iced refused to encode a generated instruction.</summary>
    public List<string> EncodeErrors { get; } = [];

    public static bool CanGenerate(OpCodeOperandKind kind) => kind is
        OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.mem
        or OpCodeOperandKind.mem_offs or OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode or OpCodeOperandKind.r16_reg
        or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r16_rm or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_opcode
        or OpCodeOperandKind.r32_rm or OpCodeOperandKind.al or OpCodeOperandKind.ax or OpCodeOperandKind.eax or OpCodeOperandKind.cl
        or OpCodeOperandKind.imm8 or OpCodeOperandKind.imm8sex16 or OpCodeOperandKind.imm8sex32 or OpCodeOperandKind.imm16
        or OpCodeOperandKind.imm32 or OpCodeOperandKind.imm8_const_1
        or OpCodeOperandKind.br16_1 or OpCodeOperandKind.br16_2 or OpCodeOperandKind.br32_1 or OpCodeOperandKind.br32_4
        or OpCodeOperandKind.seg_rSI or OpCodeOperandKind.es_rDI or OpCodeOperandKind.seg_rBX_al;

    private enum OpKind : byte { Register, Memory, Immediate, Branch }

    private struct Operand
    {
        public OpKind Kind;
        public Register Register;
        public int Immediate;
        public ulong Target;
    }

    /// <summary>Fills <paramref name="c"/> with case <paramref name="index"/> at <paramref name="eip"/>; false if Iced cannot encode it.</summary>
    public bool Generate(long index, uint eip, TestCase c, InstructionForm? only = null)
    {
        var rng = new CaseRandom(_seed, index);
        InstructionForm form = _forms[rng.Next(_forms.Length)]; // drawn in every mode, so a one-form replay sees the same stream
        if (only is not null) form = only;
        c.Index = index;
        c.Form = form;
        c.Eip = eip;
        c.EffectiveAddress = 0;
        c.Count = -1;
        c.Source = 0;

        Span<uint> regs = c.Gprs;
        for (int i = 0; i < 8; i++) regs[i] = rng.EdgeValue();
        c.Eflags = (rng.NextUInt32() & (_native ? 0x8D5u : 0xED5u)) | 2;
        FillRandom(ref rng, c.Data);
        FillRandom(ref rng, c.Stack);
        FillRandom(ref rng, c.Low);
        if (!_native && rng.Chance(92))
        {
            regs[4] = MachineLayout.StackTop - (uint)rng.Next(64);
            if (rng.Chance(80)) regs[4] &= ~3u;
        }

        if (form.IsString) return GenerateString(ref rng, form, c);

        // 1. Operands (the memory operand's displacement is fixed once every register value is final).
        Span<Operand> ops = stackalloc Operand[4];
        int memIndex = -1;
        Register baseReg = Register.None, indexReg = Register.None;
        int scale = 1;
        int bits = form.OperandBits;
        for (int i = 0; i < form.OperandKinds.Length; i++)
        {
            ref Operand op = ref ops[i];
            OpCodeOperandKind kind = form.OperandKinds[i];
            switch (kind)
            {
                case OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem:
                    if (rng.Chance(_native ? NativeMemoryPercent(form) : 50))
                    {
                        op.Kind = OpKind.Memory;
                        memIndex = i;
                        if (!AbsoluteMemory) ChooseAddressing(ref rng, ref baseReg, ref indexReg, ref scale);
                        break;
                    }
                    op.Kind = OpKind.Register;
                    op.Register = RandomRegister(ref rng, kind == OpCodeOperandKind.r8_or_mem ? 8 : kind == OpCodeOperandKind.r16_or_mem ? 16 : 32);
                    break;
                case OpCodeOperandKind.mem or OpCodeOperandKind.mem_offs:
                    op.Kind = OpKind.Memory;
                    memIndex = i;
                    if (kind == OpCodeOperandKind.mem_offs) break;
                    if (!AbsoluteMemory) ChooseAddressing(ref rng, ref baseReg, ref indexReg, ref scale);
                    break;
                case OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode:
                    op.Kind = OpKind.Register; op.Register = RandomRegister(ref rng, 8); break;
                case OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r16_rm:
                    op.Kind = OpKind.Register; op.Register = RandomRegister(ref rng, 16); break;
                case OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_opcode or OpCodeOperandKind.r32_rm:
                    op.Kind = OpKind.Register; op.Register = RandomRegister(ref rng, 32); break;
                case OpCodeOperandKind.al: op.Kind = OpKind.Register; op.Register = Register.AL; break;
                case OpCodeOperandKind.ax: op.Kind = OpKind.Register; op.Register = Register.AX; break;
                case OpCodeOperandKind.eax: op.Kind = OpKind.Register; op.Register = Register.EAX; break;
                case OpCodeOperandKind.cl: op.Kind = OpKind.Register; op.Register = Register.CL; break;
                case OpCodeOperandKind.imm8:
                    op.Kind = OpKind.Immediate;
                    op.Immediate = IsCountImmediate(form) ? CountEdges[rng.Next(CountEdges.Length)] & 0xff : (int)(rng.EdgeValue() & 0xff);
                    if (form.Mnemonic == Mnemonic.Enter) op.Immediate = rng.Chance(80) ? rng.Next(5) : rng.Next(256);
                    if (form.Mnemonic is Mnemonic.Aam or Mnemonic.Aad && rng.Chance(70)) op.Immediate = 10;
                    if (form.Mnemonic is Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc && rng.Chance(70)) op.Immediate = rng.Next(40);
                    break;
                case OpCodeOperandKind.imm8sex16 or OpCodeOperandKind.imm8sex32:
                    op.Kind = OpKind.Immediate; op.Immediate = (sbyte)rng.EdgeValue(); break;
                case OpCodeOperandKind.imm16:
                    op.Kind = OpKind.Immediate;
                    op.Immediate = form.Mnemonic is Mnemonic.Enter or Mnemonic.Ret && rng.Chance(70) ? rng.Next(64) : (int)(rng.EdgeValue() & 0xffff);
                    break;
                case OpCodeOperandKind.imm32: op.Kind = OpKind.Immediate; op.Immediate = (int)rng.EdgeValue(); break;
                case OpCodeOperandKind.imm8_const_1: op.Kind = OpKind.Immediate; op.Immediate = 1; break;
                case OpCodeOperandKind.br32_1 or OpCodeOperandKind.br32_4:
                    // Targets are the HLT byte that ends every code slot: Unicorn translates the block at the
                    // target before it stops, and QEMU's TCG aborts on some random byte sequences.
                    int reach = kind == OpCodeOperandKind.br32_1 ? 7 : MachineLayout.CasesPerBlock;
                    long slot = (eip - MachineLayout.CodeBase) / MachineLayout.SlotSize + rng.Next(2 * reach) - reach;
                    slot = Math.Clamp(slot, 0, MachineLayout.CasesPerBlock - 1);
                    op.Kind = OpKind.Branch;
                    op.Target = MachineLayout.CodeBase + (ulong)(slot * MachineLayout.SlotSize) + MachineLayout.SlotSize - 1;
                    break;
                case OpCodeOperandKind.br16_1 or OpCodeOperandKind.br16_2:
                    // 16-bit operand size: the target is truncated to 16 bits, into low memory filled with HLT.
                    op.Kind = OpKind.Branch;
                    op.Target = kind == OpCodeOperandKind.br16_1 ? (ulong)((eip + 3 + rng.Next(200) - 100) & 0xffff) : (ulong)rng.Next(0x10000);
                    break;
                default:
                    return false;
            }
        }

        // 2. The register values particular instructions need to be interesting (and not always fault).
        ApplyBias(ref rng, form, ops[..form.OperandKinds.Length], regs);

        // 3. The memory operand: any base/index values, the displacement makes the address land in the data window.
        //    Some use 16-bit addressing ([bx+si+disp16] ..., 0x67 prefix) and land in the low window instead.
        if (memIndex >= 0 && !_native && !AbsoluteMemory && form.OperandKinds[memIndex] != OpCodeOperandKind.mem_offs && rng.Chance(6))
        {
            uint target = MachineLayout.LowTarget + (uint)rng.Next(MachineLayout.LowTargetRange);
            (Register b16, Register x16) = Addressing16[rng.Next(Addressing16.Length)];
            uint b = b16 == Register.None ? 0 : regs[b16 - Register.AX] & 0xffff;
            uint x = x16 == Register.None ? 0 : regs[x16 - Register.AX] & 0xffff;
            int displacement = (ushort)(target - b - x); // Iced wants disp16 as an unsigned 16-bit value
            _memory = new MemoryOperand(b16, x16, 1, displacement, 2);
            if (form.Mnemonic != Mnemonic.Lea) c.EffectiveAddress = target;
            WriteMemoryBias(ref rng, form, c, target, regs);
        }
        else if (memIndex >= 0)
        {
            uint target = MachineLayout.DataTarget + (uint)rng.Next(MachineLayout.DataTargetRange);
            if (form.Code == Code.Cmpxchg8b_m64 || bits == 32) target &= rng.Chance(85) ? ~3u : ~0u;
            if (baseReg != Register.None && indexReg == Register.None && rng.Chance(50))
            {
                // Small displacement: make the base register point near the target.
                int small = rng.Next(3) switch { 0 => 0, 1 => rng.Next(256) - 128, _ => rng.Next(0x20000) - 0x10000 };
                if (baseReg != Register.ESP) regs[baseReg - Register.EAX] = target - (uint)small;
            }
            uint b = baseReg == Register.None ? 0 : regs[baseReg - Register.EAX];
            uint x = indexReg == Register.None ? 0 : regs[indexReg - Register.EAX] * (uint)scale;
            int displacement = (int)(target - b - x);
            var memory = new MemoryOperand(baseReg, indexReg, scale, displacement, 4);
            if (form.Mnemonic != Mnemonic.Lea) c.EffectiveAddress = target;
            ops[memIndex].Register = Register.None;
            _memory = memory;
            WriteMemoryBias(ref rng, form, c, target, regs);
        }

        Instruction instruction;
        try
        {
            instruction = Create(form.Code, ops[..form.OperandKinds.Length]);
        }
        catch (ArgumentException)
        {
            return false;
        }
        ComputeCountAndSource(form, instruction, c, ops[..form.OperandKinds.Length]);
        // Occasional prefixes: LOCK on read-modify-write memory destinations and data-segment overrides (flat
        // segments: no effect). CS is left out: writes through it would #GP on hardware. LOCK where it is illegal
        // (#UD) is not generated: Unicorn 2.0.1 aborts the process ("tcg fatal error") on some of those.
        if (memIndex == 0 && Lockable.Contains(form.Mnemonic) && rng.Chance(_native ? 20 : 5)) instruction.HasLockPrefix = true;
        if (!_native && memIndex >= 0 && rng.Chance(4)) instruction.SegmentPrefix = SegmentPrefixes[rng.Next(SegmentPrefixes.Length)];
        return Encode(instruction, c);
    }

    private MemoryOperand _memory;

    /// <summary>The 16-bit addressing forms (SDM Vol. 2A, table 2-1).</summary>
    private static readonly (Register Base, Register Index)[] Addressing16 =
    [
        (Register.BX, Register.SI), (Register.BX, Register.DI), (Register.BP, Register.SI), (Register.BP, Register.DI),
        (Register.SI, Register.None), (Register.DI, Register.None), (Register.BP, Register.None), (Register.BX, Register.None),
        (Register.None, Register.None),
    ];

    private Register RandomRegister(ref CaseRandom rng, int bits)
    {
        int r = rng.Next(8);
        if (_native && bits > 8 && r == 4) r = rng.Next(4); // never SP/ESP on the host
        return bits == 8 ? Gpr8[r] : bits == 16 ? Gpr16[r] : Gpr32[r];
    }

    /// <summary>On the host a memory operand becomes [r15+40] (8 bytes): not for BT* with a register bit offset, which reaches further.</summary>
    private static int NativeMemoryPercent(InstructionForm form) =>
        form.Mnemonic is Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc && form.OperandKinds.Length == 2
            && form.OperandKinds[1] is not OpCodeOperandKind.imm8 ? 0 : 30;

    private static void ChooseAddressing(ref CaseRandom rng, ref Register baseReg, ref Register indexReg, ref int scale)
    {
        switch (rng.Next(4))
        {
            case 0: break; // [disp32]
            case 1: baseReg = Gpr32[rng.Next(8)]; break;
            case 2: baseReg = Gpr32[rng.Next(8)]; indexReg = RandomIndex(ref rng); scale = 1 << rng.Next(4); break;
            default: indexReg = RandomIndex(ref rng); scale = 1 << rng.Next(4); break;
        }
    }

    private static Register RandomIndex(ref CaseRandom rng)
    {
        int r = rng.Next(7);
        return Gpr32[r >= 4 ? r + 1 : r];
    }

    private static bool IsCountImmediate(InstructionForm form) => form.Mnemonic is Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl
        or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Shld or Mnemonic.Shrd;

    private void ComputeCountAndSource(InstructionForm form, in Instruction instruction, TestCase c, ReadOnlySpan<Operand> ops)
    {
        switch (form.Mnemonic)
        {
            case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal
                or Mnemonic.Shr or Mnemonic.Sar or Mnemonic.Shld or Mnemonic.Shrd:
                int last = ops.Length - 1;
                c.Count = ops[last].Kind == OpKind.Immediate ? ops[last].Immediate & 0x1f : (int)(c.Gprs[1] & 0x1f);
                break;
            case Mnemonic.Bsf or Mnemonic.Bsr:
                c.Source = ops[1].Kind == OpKind.Register
                    ? ReadRegister(c.Gprs, ops[1].Register)
                    : BinaryPrimitives.ReadUInt32LittleEndian(c.InputAt(c.EffectiveAddress)) & (form.OperandBits == 16 ? 0xffffu : 0xffffffffu);
                break;
        }
    }

    private Instruction Create(Code code, ReadOnlySpan<Operand> ops)
    {
        switch (ops.Length)
        {
            case 0:
                return Instruction.Create(code);
            case 1:
                return ops[0].Kind switch
                {
                    OpKind.Register => Instruction.Create(code, ops[0].Register),
                    OpKind.Memory => Instruction.Create(code, _memory),
                    OpKind.Immediate => Instruction.Create(code, ops[0].Immediate),
                    _ => Instruction.CreateBranch(code, ops[0].Target),
                };
            case 2:
                return (ops[0].Kind, ops[1].Kind) switch
                {
                    (OpKind.Register, OpKind.Register) => Instruction.Create(code, ops[0].Register, ops[1].Register),
                    (OpKind.Register, OpKind.Memory) => Instruction.Create(code, ops[0].Register, _memory),
                    (OpKind.Memory, OpKind.Register) => Instruction.Create(code, _memory, ops[1].Register),
                    (OpKind.Register, OpKind.Immediate) => Instruction.Create(code, ops[0].Register, ops[1].Immediate),
                    (OpKind.Memory, OpKind.Immediate) => Instruction.Create(code, _memory, ops[1].Immediate),
                    (OpKind.Immediate, OpKind.Immediate) => Instruction.Create(code, ops[0].Immediate, ops[1].Immediate),
                    _ => throw new ArgumentException("operand combination"),
                };
            case 3:
                return (ops[0].Kind, ops[1].Kind, ops[2].Kind) switch
                {
                    (OpKind.Register, OpKind.Register, OpKind.Register) => Instruction.Create(code, ops[0].Register, ops[1].Register, ops[2].Register),
                    (OpKind.Memory, OpKind.Register, OpKind.Register) => Instruction.Create(code, _memory, ops[1].Register, ops[2].Register),
                    (OpKind.Register, OpKind.Register, OpKind.Immediate) => Instruction.Create(code, ops[0].Register, ops[1].Register, ops[2].Immediate),
                    (OpKind.Register, OpKind.Memory, OpKind.Immediate) => Instruction.Create(code, ops[0].Register, _memory, ops[2].Immediate),
                    (OpKind.Memory, OpKind.Register, OpKind.Immediate) => Instruction.Create(code, _memory, ops[1].Register, ops[2].Immediate),
                    _ => throw new ArgumentException("operand combination"),
                };
            default:
                throw new ArgumentException("operand count");
        }
    }

    private bool Encode(Instruction instruction, TestCase c)
    {
        _writer.Reset(c.Bytes);
        if (!_encoder.TryEncode(instruction, c.Eip, out uint length, out string? error))
        {
            if (EncodeErrors.Count < 5) EncodeErrors.Add($"{c.Form.Code}: {error}");
            return false;
        }
        c.Length = (int)length;
        c.Instruction = instruction;
        return true;
    }

    private sealed class SlotWriter : CodeWriter
    {
        private byte[] _buffer = [];
        private int _position;

        public void Reset(byte[] buffer)
        {
            _buffer = buffer;
            _position = 0;
        }

        public override void WriteByte(byte value)
        {
            if (_position < _buffer.Length) _buffer[_position] = value;
            _position++;
        }
    }
}
