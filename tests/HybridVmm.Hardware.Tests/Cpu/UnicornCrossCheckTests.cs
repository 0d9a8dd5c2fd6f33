using HybridVmm.Hardware.Cpu;
using Iced.Intel;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Runs single register-form instructions on edge values in this core and in Unicorn (QEMU TCG), and
/// compares EAX/EBX/ECX/EDX and all status flags, including the ones the SDM leaves undefined (for
/// which docs/undefined-flags.md promises QEMU's values). Skipped when libunicorn is not installed.
/// </summary>
public class UnicornCrossCheckTests
{
    private static readonly uint[] Values = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, 0x12345678, 0x9abcdef0];
    private static readonly uint[] Counts = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33];

    public static IEnumerable<TestCaseData> Instructions()
    {
        (Register a, Register b, Register c)[] sizes = [(Register.AL, Register.BL, Register.CL), (Register.AX, Register.BX, Register.CX), (Register.EAX, Register.EBX, Register.ECX)];
        string[] binary = ["Add", "Adc", "Sub", "Sbb", "And", "Or", "Xor", "Cmp", "Test", "Xadd", "Cmpxchg"];
        string[] unary = ["Inc", "Dec", "Neg", "Not", "Mul", "Imul", "Div", "Idiv"];
        string[] shifts = ["Shl", "Shr", "Sar", "Rol", "Ror", "Rcl", "Rcr"];
        foreach (var (a, b, c) in sizes)
        {
            int bits = a == Register.AL ? 8 : a == Register.AX ? 16 : 32;
            foreach (string op in binary)
                yield return Case(Instruction.Create(Enum.Parse<Code>($"{op}_rm{bits}_r{bits}"), a, b));
            foreach (string op in unary)
                yield return Case(Instruction.Create(Enum.Parse<Code>($"{op}_rm{bits}"), b));
            foreach (string op in shifts)
                yield return Case(Instruction.Create(Enum.Parse<Code>($"{op}_rm{bits}_CL"), a, Register.CL));
            if (bits > 8)
            {
                yield return Case(Instruction.Create(Enum.Parse<Code>($"Imul_r{bits}_rm{bits}"), a, b));
                yield return Case(Instruction.Create(Enum.Parse<Code>($"Shld_rm{bits}_r{bits}_CL"), a, b, Register.CL));
                yield return Case(Instruction.Create(Enum.Parse<Code>($"Shrd_rm{bits}_r{bits}_CL"), a, b, Register.CL));
                yield return Case(Instruction.Create(Enum.Parse<Code>($"Bsf_r{bits}_rm{bits}"), a, b));
                yield return Case(Instruction.Create(Enum.Parse<Code>($"Bsr_r{bits}_rm{bits}"), a, b));
                foreach (string op in new[] { "Bt", "Bts", "Btr", "Btc" })
                    yield return Case(Instruction.Create(Enum.Parse<Code>($"{op}_rm{bits}_r{bits}"), a, b));
            }
        }
        foreach (Code code in new[] { Code.Daa, Code.Das, Code.Aaa, Code.Aas })
            yield return Case(Instruction.Create(code));
        yield return Case(Instruction.Create(Code.Aam_imm8, 10));
        yield return Case(Instruction.Create(Code.Aad_imm8, 10));
    }

    private static TestCaseData Case(Instruction instruction) =>
        new TestCaseData(instruction).SetArgDisplayNames(instruction.ToString());

    [TestCaseSource(nameof(Instructions))]
    public void MatchesUnicornOnEdgeValues(Instruction instruction)
    {
        using Unicorn? unicorn = Unicorn.TryCreate();
        if (unicorn is null) Assert.Ignore("libunicorn.so.2 not available");

        var m = new TestMachine();
        byte[] code = m.Load(asm => asm.AddInstruction(instruction));
        unicorn.Write(TestMachine.CodeBase, code);
        bool isShift = instruction.Op1Register == Register.CL || instruction.Op2Register == Register.CL;
        uint[] second = isShift ? Counts : Values;
        var failures = new List<string>();
        foreach (uint flagsIn in new uint[] { 0x2, 0x8d7 })
        {
            foreach (uint a in Values)
            {
                foreach (uint b in second)
                {
                    uint ecx = isShift ? b : 0x55;
                    m.Cpu.Eip = TestMachine.CodeBase;
                    m.Cpu[Gpr.Eax] = a; m.Cpu[Gpr.Ebx] = isShift ? 0xa5a5a5a5 ^ a : b; m.Cpu[Gpr.Ecx] = ecx; m.Cpu[Gpr.Edx] = 3;
                    m.Cpu.Eflags = flagsIn;
                    unicorn.SetReg(Unicorn.RegEax, a);
                    unicorn.SetReg(Unicorn.RegEbx, m.Cpu[Gpr.Ebx]);
                    unicorn.SetReg(Unicorn.RegEcx, ecx);
                    unicorn.SetReg(Unicorn.RegEdx, 3);
                    unicorn.SetReg(Unicorn.RegEflags, flagsIn);
                    unicorn.SetReg(Unicorn.RegEsp, TestMachine.StackTop);

                    CpuExit exit = m.Cpu.Run(1);
                    // Without an IDT Unicorn "delivers" an exception by jumping elsewhere, so success means
                    // EIP reached the end of the instruction.
                    bool ok = unicorn.Run(TestMachine.CodeBase, TestMachine.CodeBase + (uint)code.Length, 1)
                        && unicorn.GetReg(Unicorn.RegEip) == TestMachine.CodeBase + (uint)code.Length;
                    bool coreOk = exit.Reason == CpuExitReason.BudgetExhausted;
                    string input = $"eax={a:x} ebx={m.Cpu[Gpr.Ebx]:x} ecx={ecx:x} flags={flagsIn:x}";
                    if (ok != coreOk)
                    {
                        failures.Add($"{input}: unicorn ok={ok}, core {exit.Reason}");
                        continue;
                    }
                    if (!ok) continue;
                    uint[] expected = [unicorn.GetReg(Unicorn.RegEax), unicorn.GetReg(Unicorn.RegEbx),
                        unicorn.GetReg(Unicorn.RegEcx), unicorn.GetReg(Unicorn.RegEdx), unicorn.GetReg(Unicorn.RegEflags) & F.Status];
                    uint[] actual = [m.Cpu[Gpr.Eax], m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Edx], m.Cpu.Eflags & F.Status];
                    if (!expected.SequenceEqual(actual))
                    {
                        failures.Add($"{input}: unicorn [{string.Join(' ', expected.Select(v => v.ToString("x")))}] core [{string.Join(' ', actual.Select(v => v.ToString("x")))}]");
                    }
                }
            }
        }
        Assert.That(failures, Is.Empty, () => $"{failures.Count} mismatches, first: " + string.Join("\n", failures.Take(8)));
    }
}
