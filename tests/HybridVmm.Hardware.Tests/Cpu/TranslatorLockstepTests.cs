using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Tier 0 against tier 1: random programs of many blocks (straight-line arithmetic, memory operands, some crossing a
/// page, pushes and pops, calls and returns, conditional branches, blocks that loop on themselves, writes into their
/// own code page) run on one core
/// with the interpreter alone and on another with the translator. They run in chunks of random length, so blocks
/// are entered whole, left early at a budget's end, or not entered; after every chunk the registers, EIP, EFLAGS,
/// the retired-instruction count and the data and stack memory must be equal.
/// </summary>
public class TranslatorLockstepTests
{
    private const int DataSize = 0x1200; // the data window crosses a page boundary at DataBase + 0x1000
    private const int LoopCounter = DataSize + 0x10; // a self-looping block's pass count, past what the bodies write
    private static readonly Register[] Free32 = [Register.EAX, Register.ECX, Register.EDX, Register.EDI, Register.EBP];
    private static readonly Register[] Free16 = [Register.AX, Register.CX, Register.DX, Register.DI, Register.BP];
    private static readonly Register[] Free8 = [Register.AL, Register.CL, Register.DL, Register.AH, Register.CH, Register.DH];
    private static readonly string[] Alu = ["Add", "Adc", "Sub", "Sbb", "And", "Or", "Xor", "Cmp", "Test"];
    private static readonly string[] Unary = ["Inc", "Dec", "Neg", "Not"];
    private static readonly string[] Shifts = ["Shl", "Shr", "Sar", "Rol", "Ror", "Rcl", "Rcr"];
    private static readonly string[] Conditions = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

    private static readonly Action<Assembler, Label>[] Branches =
    [
        (a, l) => a.je(l), (a, l) => a.jne(l), (a, l) => a.jb(l), (a, l) => a.jae(l), (a, l) => a.jl(l), (a, l) => a.jge(l),
        (a, l) => a.jle(l), (a, l) => a.jg(l), (a, l) => a.js(l), (a, l) => a.jns(l), (a, l) => a.jo(l), (a, l) => a.jp(l),
        (a, l) => a.jbe(l), (a, l) => a.ja(l), (a, l) => a.jmp(l),
    ];

    public static IEnumerable<int> Seeds() => Enumerable.Range(1, 24);

    [TestCaseSource(nameof(Seeds))]
    public void TranslatorMatchesInterpreterOnRandomPrograms(int seed)
    {
        var random = new Random(seed);
        // Every fourth program also writes into its own code page, which drops the page's blocks each time.
        bool writesCode = seed % 4 == 0;
        Action<Assembler> program = Program(random, writesCode);
        uint[] registers = Enumerable.Range(0, 8).Select(_ => (uint)random.NextInt64(0, 1L << 32)).ToArray();
        byte[] data = new byte[DataSize];
        random.NextBytes(data);

        TestMachine interp = Machine(program, registers, data, ExecutionTier.Interpreter);
        TestMachine jit = Machine(program, registers, data, ExecutionTier.Jit);
        jit.Cpu.JitHotThreshold = 1 + seed % 3;
        jit.Cpu.CompileInBackground = false; // a block runs the moment it is hot: the test's coverage does not depend on timing

        int chunks = 0;
        while (true)
        {
            long budget = random.Next(4) == 0 ? random.Next(1, 8) : random.Next(8, 400);
            CpuExit a = interp.Cpu.Run(budget);
            CpuExit b = jit.Cpu.Run(budget);
            chunks++;
            string where = $"seed {seed}, chunk {chunks} (budget {budget})";
            Assert.That(b.Reason, Is.EqualTo(a.Reason), where);
            AssertSameState(interp, jit, where);
            if (a.Reason != CpuExitReason.BudgetExhausted)
            {
                Assert.That(a.Reason, Is.EqualTo(CpuExitReason.Halt), () => $"{where}: {a}\n{interp.Cpu.DescribeState()}");
                break;
            }
            Assert.That(chunks, Is.LessThan(100_000), "the program should halt");
        }
        JitStatistics stats = jit.Cpu.JitStatistics;
        if (!writesCode)
        {
            Assert.That(stats.InstructionsInBlocks, Is.GreaterThan(jit.Cpu.InstructionsRetired / 2),
                $"the translator should have run most of the program: {stats}");
        }
        Assert.That(interp.Cpu.JitStatistics.BlockEntries, Is.Zero, "tier 0 runs no block");
    }

    [Test]
    public void AnExitInALaterPassOfALoopingBlockShowsTheFlagsOfThePassBefore()
    {
        // A block that loops on itself, and writes every status flag before it reads one, does not compute the flags at
        // its loop-back. In its 13th pass the first instruction reads a page the second-level table does not map:
        // the exit must show EFLAGS as DEC (with CMP's CF) left them in the 12th pass, as under the interpreter.
        var results = new List<(CpuExit Exit, uint Eflags, uint Ecx)>();
        foreach (ExecutionTier tier in new[] { ExecutionTier.Interpreter, ExecutionTier.Jit })
        {
            var m = new TestMachine();
            m.Cpu.Tier = tier;
            m.Cpu.JitHotThreshold = 2; // the first pass decodes the loop, so the block compiled at the second holds it
            m.Cpu.CompileInBackground = false;
            m.Slat.Unmap((TestMachine.DataBase + 0x3000) >> 12);
            m.Load(a =>
            {
                a.mov(ecx, 22);
                a.mov(ebx, TestMachine.DataBase);
                Label top = a.CreateLabel();
                a.Label(ref top);
                a.mov(eax, __dword_ptr[ebx]);
                a.add(ebx, 0x400);
                a.cmp(ecx, 15);
                a.dec(ecx);
                a.jnz(top);
                a.hlt();
            });
            CpuExit exit = m.Cpu.Run(1000);
            results.Add((exit, m.Cpu.Eflags, m.Cpu[Gpr.Ecx]));
            if (tier == ExecutionTier.Jit)
            {
                Assert.That(m.Cpu.JitStatistics.InstructionsInBlocks, Is.GreaterThan(30), "the loop ran as a block");
            }
        }
        Assert.That((results[0].Exit.Reason, results[0].Exit.GuestPhysicalAddress, results[0].Ecx),
            Is.EqualTo((CpuExitReason.MemoryIntercept, (ulong)TestMachine.DataBase + 0x3000, 10u)), "the 13th pass reads the unmapped page");
        Assert.That(results[0].Eflags & 0x8D5, Is.EqualTo(0x05u), "DEC 11 to 10: CF kept from CMP 11, 15, PF of 0b1010");
        Assert.That(results[1], Is.EqualTo(results[0]));
    }

    [Test]
    public void WritingTheRunningBlocksOwnCodeTakesEffectAtOnce()
    {
        // A loop whose body rewrites the immediate of an instruction further down its own block: each pass must see the
        // byte stored by the pass before, as the interpreter does (the write leaves the block and drops its page's code).
        foreach (ExecutionTier tier in new[] { ExecutionTier.Interpreter, ExecutionTier.Jit })
        {
            var m = new TestMachine();
            m.Cpu.Tier = tier;
            m.Cpu.JitHotThreshold = 1;
            m.Cpu.CompileInBackground = false;
            uint immediate = TestMachine.CodeBase + 17;
            byte[] code =
            [
                0xB9, 100, 0, 0, 0,                          // mov ecx, 100
                0x31, 0xD2,                                  // xor edx, edx
                0x89, 0xC8,                                  // top (+7): mov eax, ecx
                0x88, 0x05, (byte)immediate, (byte)(immediate >> 8), (byte)(immediate >> 16), (byte)(immediate >> 24), // mov [imm8 below], al
                0x83, 0xC2, 0x7F,                            // +15: add edx, imm8 (the byte at +17)
                0x49,                                        // dec ecx
                0x75, 0xF2,                                  // jnz top
                0xF4,                                        // hlt
            ];
            m.WriteBytes(TestMachine.CodeBase, code);
            m.Cpu.Eip = TestMachine.CodeBase;
            m.RunToHalt();
            Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(5050u), $"{tier}: the sum of the patched immediates 1..100");
        }
    }

    /// <summary>
    /// Every condition after every flag-writing operation the translator keeps lazily, at each size, on edge operands:
    /// the translator decides most of them from the kept operands without computing the flags, so each must branch
    /// as the interpreter does, and leave the same flags.
    /// </summary>
    [TestCase("Add")]
    [TestCase("Sub")]
    [TestCase("Cmp")]
    [TestCase("And")]
    [TestCase("Or")]
    [TestCase("Xor")]
    [TestCase("Test")]
    [TestCase("Adc")]
    [TestCase("Inc")]
    [TestCase("Dec")]
    [TestCase("Neg")]
    [TestCase("Shl1")]
    [TestCase("Shl7")]
    [TestCase("Shr1")]
    [TestCase("Shr7")]
    [TestCase("Sar1")]
    [TestCase("Sar7")]
    [TestCase("Imul")]
    [TestCase("Cmp+Inc")] // INC and DEC keep the CF of the operation before them
    [TestCase("Add+Dec")]
    [TestCase("Test+Inc")]
    [TestCase("Shr1+Inc")]
    [TestCase("Imul+Dec")]
    [TestCase("Sub+Adc")] // ADC and SBB take it
    [TestCase("Add+Sbb")]
    [TestCase("Shl7+Adc")]
    [TestCase("Imul+Sbb")]
    public void ConditionsAfterEachFlagWritingOperationMatchTheInterpreter(string operation)
    {
        Action<Assembler, Label>[] conditions =
        [
            (a, l) => a.jo(l), (a, l) => a.jno(l), (a, l) => a.jb(l), (a, l) => a.jae(l), (a, l) => a.je(l), (a, l) => a.jne(l),
            (a, l) => a.jbe(l), (a, l) => a.ja(l), (a, l) => a.js(l), (a, l) => a.jns(l), (a, l) => a.jp(l), (a, l) => a.jnp(l),
            (a, l) => a.jl(l), (a, l) => a.jge(l), (a, l) => a.jle(l), (a, l) => a.jg(l),
        ];
        string[] sequence = operation.Split('+');
        bool unary = sequence.All(op => op is "Inc" or "Dec" or "Neg" || op.StartsWith("Sh") || op.StartsWith("Sar"));
        var random = new Random(operation.Length * 7919 + operation[0]);
        int cases = 0;
        foreach (int bits in new[] { 8, 16, 32 })
        {
            if (bits == 8 && sequence.Contains("Imul"))
            {
                continue; // IMUL has no two-operand 8-bit form
            }
            uint max = bits == 32 ? uint.MaxValue : (1u << bits) - 1;
            uint[] values = [0, 1, 2, max >> 1, (max >> 1) + 1, max - 1, max, 0x55555555 & max];
            Register x = bits switch { 8 => Register.AL, 16 => Register.AX, _ => Register.EAX };
            Register y = bits switch { 8 => Register.CL, 16 => Register.CX, _ => Register.ECX };
            for (int cc = 0; cc < conditions.Length; cc++)
            {
                TestMachine interp = new(), jit = new();
                interp.Cpu.Tier = ExecutionTier.Interpreter;
                jit.Cpu.Tier = ExecutionTier.Jit;
                jit.Cpu.JitHotThreshold = 2; // the first pass decodes the branch, so the block compiled at the second holds it
                jit.Cpu.CompileInBackground = false;
                foreach (TestMachine m in new[] { interp, jit })
                {
                    m.Load(a =>
                    {
                        Label taken = a.CreateLabel();
                        foreach (string op in sequence)
                        {
                            a.AddInstruction(op switch
                            {
                                "Inc" or "Dec" or "Neg" => Instruction.Create(Enum.Parse<Code>($"{op}_rm{bits}"), x),
                                "Imul" => Instruction.Create(Enum.Parse<Code>($"Imul_r{bits}_rm{bits}"), x, y),
                                _ when char.IsDigit(op[^1]) => Instruction.Create(Enum.Parse<Code>($"{op[..3]}_rm{bits}_imm8"), x, op[3] - '0'),
                                _ => Instruction.Create(Enum.Parse<Code>($"{op}_rm{bits}_r{bits}"), x, y),
                            });
                        }
                        conditions[cc](a, taken);
                        a.mov(edx, 0);
                        a.hlt();
                        a.Label(ref taken);
                        a.mov(edx, 1);
                        a.hlt();
                    });
                }
                foreach (uint first in values)
                {
                    foreach (uint second in unary ? values.Take(1) : values)
                    {
                        uint high = (uint)random.NextInt64(0, 1L << 32) & ~max; // bits above the operand size must not matter
                        uint flags = 0x2 | ((uint)random.Next() & 0x8d5);
                        cases++;
                        foreach (TestMachine m in new[] { interp, jit })
                        {
                            m.Cpu[Gpr.Eax] = high | first;
                            m.Cpu[Gpr.Ecx] = high | second;
                            m.Cpu[Gpr.Edx] = 0xFFFFFFFF;
                            m.Cpu.Eflags = flags;
                            m.Cpu.Eip = TestMachine.CodeBase;
                            m.RunToHalt(100);
                        }
                        string where = $"{operation} {bits}-bit {first:x}, {second:x}, condition {cc}";
                        Assert.That(jit.Cpu[Gpr.Edx], Is.EqualTo(interp.Cpu[Gpr.Edx]), $"{where}: taken");
                        Assert.That(jit.Cpu.Eflags, Is.EqualTo(interp.Cpu.Eflags), $"{where}: EFLAGS");
                        Assert.That(jit.Cpu[Gpr.Eax], Is.EqualTo(interp.Cpu[Gpr.Eax]), $"{where}: result");
                    }
                }
                Assert.That(jit.Cpu.JitStatistics.InstructionsInBlocks, Is.GreaterThan(0), $"{operation} {bits}-bit condition {cc}: the translator ran it");
            }
        }
        Assert.That(cases, Is.GreaterThan(100));
    }

    /// <summary>
    /// A memory form the block hands to the interpreter's handler faults in the middle of a looping block (its operand
    /// passes DS's limit while the access before it does not): the block must leave before it, so that the interpreter
    /// raises the #GP with the state of that instruction, as tier 0 does.
    /// </summary>
    [TestCase(Code.Xchg_rm32_r32)]
    [TestCase(Code.Cmpxchg_rm32_r32)]
    [TestCase(Code.Xadd_rm32_r32)]
    [TestCase(Code.Shl_rm32_imm8)]
    [TestCase(Code.Setl_rm8)]
    [TestCase(Code.Cmovb_r32_rm32)]
    [TestCase(Code.Imul_r32_rm32)]
    [TestCase(Code.Bts_rm32_imm8)]
    [TestCase(Code.Bsf_r32_rm32)]
    public void AMemoryFormThatFaultsInABlockFaultsAsInTheInterpreter(Code form)
    {
        var operand = new MemoryOperand(Register.EBX, 0x80, form == Code.Setl_rm8 ? 1 : 4);
        Instruction instruction = form switch
        {
            Code.Setl_rm8 => Instruction.Create(form, operand),
            Code.Shl_rm32_imm8 or Code.Bts_rm32_imm8 => Instruction.Create(form, operand, 3),
            Code.Cmovb_r32_rm32 or Code.Imul_r32_rm32 or Code.Bsf_r32_rm32 => Instruction.Create(form, Register.EDX, operand),
            _ => Instruction.Create(form, operand, Register.EDX),
        };
        var results = new List<(CpuExit Exit, TestMachine Machine)>();
        foreach (ExecutionTier tier in new[] { ExecutionTier.Interpreter, ExecutionTier.Jit })
        {
            var m = new TestMachine();
            m.Cpu.Tier = tier;
            m.Cpu.JitHotThreshold = 2;
            m.Cpu.CompileInBackground = false;
            // A GDT whose data segment ends at DataBase + 0xF7F (byte-granular, 32-bit, writable).
            const uint gdt = 0x30000;
            uint limit = TestMachine.DataBase + 0xF7F;
            m.WriteBytes(gdt, [
                0, 0, 0, 0, 0, 0, 0, 0,
                0xFF, 0xFF, 0, 0, 0, 0x9B, 0xCF, 0,
                (byte)limit, (byte)(limit >> 8), 0, 0, 0, 0x93, (byte)(0x40 | (limit >> 16)), 0,
            ]);
            m.Cpu.Gdtr = new DescriptorTableRegister(gdt, 23);
            m.Load(a =>
            {
                Label loop = a.CreateLabel();
                a.mov(ax, 0x10);
                a.mov(ds, ax);
                a.mov(ebx, TestMachine.DataBase);
                a.mov(ecx, 40);
                a.mov(edx, 0x1234);
                a.Label(ref loop);
                a.mov(eax, __dword_ptr[ebx]); // within the limit one pass longer than the operand at EBX + 0x80
                a.AddInstruction(instruction);
                a.add(ebx, 0x100);
                a.dec(ecx);
                a.jnz(loop);
                a.hlt();
            });
            results.Add((m.Cpu.Run(100_000), m));
        }
        (CpuExit interpExit, TestMachine interp) = results[0];
        (CpuExit jitExit, TestMachine jit) = results[1];
        Assert.That(interpExit.Reason, Is.EqualTo(CpuExitReason.Exception), "tier 0 raises #GP past the limit");
        Assert.That(interpExit.Vector, Is.EqualTo(13));
        Assert.That(jitExit, Is.EqualTo(interpExit));
        for (int r = 0; r < 8; r++)
        {
            Assert.That(jit.Cpu[(Gpr)r], Is.EqualTo(interp.Cpu[(Gpr)r]), $"{(Gpr)r}");
        }
        Assert.That(jit.Cpu.Eip, Is.EqualTo(interp.Cpu.Eip), "EIP: on the faulting instruction");
        Assert.That(jit.Cpu.InstructionsRetired, Is.EqualTo(interp.Cpu.InstructionsRetired));
        Assert.That(jit.Cpu.JitStatistics.InstructionsInBlocks, Is.GreaterThan(0), "the loop ran translated until the fault");
    }

    private static TestMachine Machine(Action<Assembler> program, uint[] registers, byte[] data, ExecutionTier tier)
    {
        var m = new TestMachine();
        m.Cpu.Tier = tier;
        m.Load(program);
        for (int r = 0; r < 8; r++) m.Cpu[(Gpr)r] = registers[r];
        m.Cpu[Gpr.Ebx] = TestMachine.DataBase;
        m.Cpu[Gpr.Esi] = 150; // passes over the body
        m.Cpu[Gpr.Esp] = TestMachine.StackTop;
        m.Cpu.Eflags = 0x2 | (registers[0] & 0x8d5);
        m.WriteBytes(TestMachine.DataBase, data);
        return m;
    }

    private static void AssertSameState(TestMachine interp, TestMachine jit, string where)
    {
        for (int r = 0; r < 8; r++)
        {
            Assert.That(jit.Cpu[(Gpr)r], Is.EqualTo(interp.Cpu[(Gpr)r]), $"{where}: {(Gpr)r}");
        }
        Assert.That(jit.Cpu.Eip, Is.EqualTo(interp.Cpu.Eip), $"{where}: EIP");
        Assert.That(jit.Cpu.Eflags, Is.EqualTo(interp.Cpu.Eflags), $"{where}: EFLAGS");
        Assert.That(jit.Cpu.InstructionsRetired, Is.EqualTo(interp.Cpu.InstructionsRetired), $"{where}: instructions retired");
        Assert.That(jit.Memory.Bytes.Slice((int)TestMachine.DataBase, DataSize).SequenceEqual(interp.Memory.Bytes.Slice((int)TestMachine.DataBase, DataSize)),
            Is.True, $"{where}: data");
        Assert.That(jit.Memory.Bytes.Slice((int)TestMachine.StackTop - 0x400, 0x400).SequenceEqual(interp.Memory.Bytes.Slice((int)TestMachine.StackTop - 0x400, 0x400)),
            Is.True, $"{where}: stack");
        Assert.That(jit.Memory.Bytes.Slice((int)TestMachine.CodeBase, 0x2000).SequenceEqual(interp.Memory.Bytes.Slice((int)TestMachine.CodeBase, 0x2000)),
            Is.True, $"{where}: code");
    }

    /// <summary>A random program: blocks with forward branches, a subroutine, an outer loop on ESI, then HLT.</summary>
    private static Action<Assembler> Program(Random random, bool writesCode)
    {
        int blocks = random.Next(4, 12);
        int[] lengths = Enumerable.Range(0, blocks).Select(_ => random.Next(2, 14)).ToArray();
        int[] branchTo = Enumerable.Range(0, blocks).Select(i => random.Next(3) == 0 ? -1 : random.Next(i + 1, blocks + 1)).ToArray();
        int[] branchKind = Enumerable.Range(0, blocks).Select(_ => random.Next(Branches.Length)).ToArray();
        bool[] calls = Enumerable.Range(0, blocks).Select(_ => random.Next(4) == 0).ToArray();
        // A block that branches back to its own start: the translator runs its passes inside the block while the budget
        // allows. Its pass count is set just before it (forward branches to the block land on that).
        int[] loops = Enumerable.Range(0, blocks).Select(_ => random.Next(3) == 0 ? random.Next(1, 12) : 0).ToArray();
        int bodySeed = random.Next();
        return a =>
        {
            var body = new Random(bodySeed); // the same instructions each time the program is assembled
            Label sub = a.CreateLabel(), end = a.CreateLabel();
            Label[] labels = Enumerable.Range(0, blocks + 1).Select(_ => a.CreateLabel()).ToArray();
            Label top = labels[0];
            for (int i = 0; i < blocks; i++)
            {
                var counter = new MemoryOperand(Register.EBX, LoopCounter, 1);
                a.Label(ref labels[i]);
                Label head = labels[i];
                if (loops[i] != 0)
                {
                    a.AddInstruction(Instruction.Create(Code.Mov_rm8_imm8, counter, loops[i]));
                    head = a.CreateLabel();
                    a.Label(ref head);
                }
                for (int n = 0; n < lengths[i]; n++) Straight(a, body, writesCode);
                if (loops[i] != 0)
                {
                    // DEC then JNZ, or SUB then JA: a condition decided from INC/DEC's or SUB's kept operands.
                    if (loops[i] % 2 == 0)
                    {
                        a.AddInstruction(Instruction.Create(Code.Dec_rm8, counter));
                        a.jne(head);
                    }
                    else
                    {
                        a.AddInstruction(Instruction.Create(Code.Sub_rm8_imm8, counter, 1));
                        a.ja(head);
                    }
                }
                if (calls[i]) a.call(sub);
                if (branchTo[i] >= 0) Branches[branchKind[i]](a, labels[branchTo[i]]);
            }
            a.Label(ref labels[blocks]);
            a.dec(esi);
            a.jnz(top);
            a.jmp(end);
            a.Label(ref sub);
            for (int n = 0; n < 6; n++) Straight(a, body, writesCode);
            a.ret();
            a.Label(ref end);
            a.hlt();
        };
    }

    private static MemoryOperand Data(Random r) => new(Register.EBX, r.Next(0, DataSize - 4));

    private static T Pick<T>(Random r, T[] items) => items[r.Next(items.Length)];

    /// <summary>One straight-line instruction (or a balanced push/pop, enter/leave or code-write group).</summary>
    private static void Straight(Assembler a, Random r, bool writesCode)
    {
        int bits = r.Next(5) switch { 0 => 8, 1 => 16, _ => 32 };
        Register[] regs = bits == 8 ? Free8 : bits == 16 ? Free16 : Free32;
        Register x = Pick(r, regs), y = Pick(r, regs);
        int imm = bits == 8 ? r.Next(-128, 128) : bits == 16 ? r.Next(-32768, 32768) : r.Next();
        int immBits = bits == 16 ? 16 : bits == 8 ? 8 : 32;
        switch (r.Next(24))
        {
            case 0: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"Mov_rm{bits}_r{bits}"), x, y)); break;
            case 1: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"Mov_r{bits}_rm{bits}"), x, Data(r))); break;
            case 2: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"Mov_rm{bits}_r{bits}"), Data(r), x)); break;
            case 3: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"Mov_rm{bits}_imm{immBits}"), Data(r), imm)); break;
            case 4 or 5: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"{Pick(r, Alu)}_rm{bits}_r{bits}"), x, y)); break;
            case 6: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"{Pick(r, Alu)}_rm{bits}_imm{immBits}"), x, imm)); break;
            case 7:
                {
                    string op = Pick(r, Alu);
                    a.AddInstruction(op == "Test"
                        ? Instruction.Create(Enum.Parse<Code>($"Test_rm{bits}_r{bits}"), Data(r), x)
                        : Instruction.Create(Enum.Parse<Code>($"{op}_r{bits}_rm{bits}"), x, Data(r)));
                    break;
                }
            case 8: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"{Pick(r, Alu)}_rm{bits}_r{bits}"), Data(r), x)); break;
            case 9: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"{Pick(r, Alu)}_rm{bits}_imm{immBits}"), Data(r), imm)); break;
            case 10: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"{Pick(r, Unary)}_rm{bits}"), x)); break;
            case 11: a.AddInstruction(Instruction.Create(Enum.Parse<Code>($"{Pick(r, Unary)}_rm{bits}"), Data(r))); break;
            case 12:
                a.AddInstruction(Instruction.Create(Code.Lea_r32_m, Pick(r, Free32),
                    new MemoryOperand(Pick(r, Free32), Pick(r, Free32), 1 << r.Next(4), r.Next(-5000, 5000), 4)));
                break;
            case 13:
                {
                    string ext = r.Next(2) == 0 ? "Movzx" : "Movsx";
                    int from = r.Next(2) == 0 ? 8 : 16;
                    a.AddInstruction(r.Next(2) == 0
                        ? Instruction.Create(Enum.Parse<Code>($"{ext}_r32_rm{from}"), Pick(r, Free32), from == 8 ? Pick(r, Free8) : Pick(r, Free16))
                        : Instruction.Create(Enum.Parse<Code>($"{ext}_r32_rm{from}"), Pick(r, Free32), Data(r)));
                    break;
                }
            case 14:
                switch (r.Next(4))
                {
                    case 0:
                        // PUSHFD and POPFD around an instruction: the flags come back.
                        a.pushfd();
                        Straight(a, r, writesCode);
                        a.popfd();
                        break;
                    case 1:
                        // POPFD of random status flags and DF (it ends the block).
                        a.AddInstruction(Instruction.Create(Code.Pushd_imm32, 0x2 | (r.Next() & 0xCD5)));
                        a.popfd();
                        break;
                    default:
                        a.AddInstruction(r.Next(2) == 0 ? Instruction.Create(Code.Push_r32, Pick(r, Free32)) : Instruction.Create(Code.Pushd_imm32, r.Next()));
                        Straight(a, r, writesCode);
                        a.AddInstruction(Instruction.Create(Code.Pop_r32, Pick(r, Free32)));
                        break;
                }
                break;
            case 15:
                a.AddInstruction(r.Next(2) == 0
                    ? Instruction.Create(Enum.Parse<Code>($"{Pick(r, Shifts)}_rm{bits}_imm8"), x, r.Next(0, 40))
                    : Instruction.Create(Enum.Parse<Code>($"{Pick(r, Shifts)}_rm{bits}_CL"), x, Register.CL));
                break;
            case 16:
                a.AddInstruction(r.Next(5) switch
                {
                    0 => Instruction.Create(Code.Imul_r32_rm32, Pick(r, Free32), Pick(r, Free32)),
                    1 => Instruction.Create(Code.Imul_r32_rm32_imm32, Pick(r, Free32), Pick(r, Free32), r.Next()),
                    2 => Instruction.Create(Code.Imul_r32_rm32_imm8, Pick(r, Free32), Data(r), r.Next(-128, 128)),
                    3 => Instruction.Create(Code.Imul_r16_rm16, Pick(r, Free16), Pick(r, Free16)),
                    _ => Instruction.Create(Code.Imul_r16_rm16_imm16, Pick(r, Free16), Data(r), r.Next(-32768, 32768)),
                });
                break;
            case 17:
                {
                    // SETcc and CMOVcc of every condition, right after a flag-writing instruction or further on.
                    string cc = Pick(r, Conditions);
                    a.AddInstruction(r.Next(4) switch
                    {
                        0 => Instruction.Create(Enum.Parse<Code>($"Set{cc}_rm8"), Pick(r, Free8)),
                        1 => Instruction.Create(Enum.Parse<Code>($"Cmov{cc}_r32_rm32"), Pick(r, Free32), Pick(r, Free32)),
                        2 => Instruction.Create(Enum.Parse<Code>($"Cmov{cc}_r16_rm16"), Pick(r, Free16), Data(r)),
                        _ => Instruction.Create(Code.Bsr_r32_rm32, Pick(r, Free32), Pick(r, Free32)),
                    });
                    break;
                }
            case 18:
                a.AddInstruction(r.Next(8) switch
                {
                    0 => Instruction.Create(Code.Cdq),
                    1 => Instruction.Create(Code.Cwde),
                    2 => Instruction.Create(Code.Cbw),
                    3 => Instruction.Create(Code.Cwd),
                    4 => Instruction.Create(Enum.Parse<Code>($"Xchg_rm{bits}_r{bits}"), x, y),
                    5 => Instruction.Create(Code.Stc),
                    6 => Instruction.Create(Code.Cmc),
                    _ => Instruction.Create(Code.Clc),
                });
                break;
            case 19:
                // A frame: ENTER's work by hand, then LEAVE (EBP and ESP are restored; the body leaves EBP alone).
                a.push(ebp);
                a.mov(ebp, esp);
                a.AddInstruction(Instruction.Create(Code.Sub_rm32_imm8, Register.ESP, r.Next(0, 64) & ~3));
                a.AddInstruction(Instruction.Create(Code.Mov_rm32_r32, new MemoryOperand(Register.EBP, -4), Pick(r, Free32)));
                a.leave();
                break;
            case 20 when writesCode:
                // Read a byte of the program and store it back: a write to a page of cached code, with no change.
                {
                    MemoryOperand code = new(Register.None, TestMachine.CodeBase + r.Next(0, 0x80));
                    a.AddInstruction(Instruction.Create(Code.Mov_r8_rm8, Register.AL, code));
                    a.AddInstruction(Instruction.Create(Code.Mov_rm8_r8, code, Register.AL));
                    break;
                }
            case 21:
                // Memory forms the block runs through the interpreter's handler once it has checked the operand.
                a.AddInstruction(r.Next(9) switch
                {
                    0 => r.Next(2) == 0
                        ? Instruction.Create(Enum.Parse<Code>($"{Pick(r, Shifts)}_rm{bits}_imm8"), Data(r), r.Next(0, 40))
                        : Instruction.Create(Enum.Parse<Code>($"{Pick(r, Shifts)}_rm{bits}_CL"), Data(r), Register.CL),
                    1 => Instruction.Create(Enum.Parse<Code>($"Xchg_rm{bits}_r{bits}"), Data(r), x),
                    2 => Instruction.Create(Enum.Parse<Code>($"Cmpxchg_rm{bits}_r{bits}"), Data(r), x),
                    3 => Instruction.Create(Enum.Parse<Code>($"Xadd_rm{bits}_r{bits}"), Data(r), x),
                    4 => Instruction.Create(Code.Setl_rm8, Data(r)),
                    5 => Instruction.Create(Code.Cmovb_r32_rm32, Pick(r, Free32), Data(r)),
                    6 => Instruction.Create(Code.Imul_r32_rm32, Pick(r, Free32), Data(r)),
                    7 => Instruction.Create(Code.Bts_rm32_imm8, Data(r), r.Next(0, 32)),
                    _ => Instruction.Create(Code.Bsf_r32_rm32, Pick(r, Free32), Data(r)),
                });
                break;
            case 22:
                // The time-stamp counter: in a block it must count the instructions the block retired before it.
                a.AddInstruction(Instruction.Create(r.Next(2) == 0 ? Code.Rdtsc : Code.Rdtscp));
                break;
            default:
                a.AddInstruction(Instruction.Create(Code.Mov_rm32_r32, Pick(r, Free32), Register.ESP)); // an ESP read
                break;
        }
    }
}
