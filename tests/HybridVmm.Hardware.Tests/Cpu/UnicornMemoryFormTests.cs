using HybridVmm.Hardware.Cpu;
using Iced.Intel;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Memory-operand and string forms cross-checked with Unicorn: all eight registers, status flags and
/// the bytes around the operand must agree. Skipped when libunicorn is not installed.
/// </summary>
public class UnicornMemoryFormTests
{
    private const uint Data = TestMachine.DataBase + 0x1000;
    private const int Window = 0x200;
    private static readonly uint[] Values = [0, 1, 0x7f, 0x80, 0xffff, 0x8000, 0x7fffffff, 0x80000000, 0xffffffff, 0x23, 0xfffffff9];

    private static MemoryOperand At(int displacement = 0) => new(Register.None, (long)Data + displacement);
    private static MemoryOperand AtEsi() => new(Register.ESI);

    public static IEnumerable<TestCaseData> Instructions()
    {
        Instruction[] list =
        [
            Instruction.Create(Code.Add_rm32_r32, At(), Register.EBX),
            Instruction.Create(Code.Sbb_rm16_r16, At(), Register.BX),
            Instruction.Create(Code.Sub_r8_rm8, Register.BL, At(1)),
            Instruction.Create(Code.Neg_rm32, At()),
            Instruction.Create(Code.Inc_rm8, At(3)),
            Instruction.Create(Code.Shl_rm16_CL, At(), Register.CL),
            Instruction.Create(Code.Rcr_rm32_CL, At(), Register.CL),
            Instruction.Create(Code.Sar_rm8_CL, At(), Register.CL),
            Instruction.Create(Code.Shld_rm32_r32_CL, At(), Register.EBX, Register.CL),
            Instruction.Create(Code.Shrd_rm16_r16_CL, At(), Register.BX, Register.CL),
            Instruction.Create(Code.Bt_rm32_r32, At(), Register.EBX),
            Instruction.Create(Code.Bts_rm32_r32, At(), Register.ECX),
            Instruction.Create(Code.Btr_rm16_r16, At(), Register.CX),
            Instruction.Create(Code.Btc_rm32_imm8, At(), 37),
            Instruction.Create(Code.Xadd_rm32_r32, At(), Register.EBX),
            Instruction.Create(Code.Cmpxchg_rm16_r16, At(), Register.BX),
            Instruction.Create(Code.Cmpxchg8b_m64, At()),
            Instruction.Create(Code.Movsx_r32_rm16, Register.EBX, At(1)),
            Instruction.Create(Code.Imul_r32_rm32_imm32, Register.EDX, At(), -100000),
            Instruction.Create(Code.Mul_rm32, At()),
            Instruction.Create(Code.Idiv_rm16, At()),
            Instruction.Create(Code.Setle_rm8, At(2)),
            Instruction.Create(Code.Cmovb_r32_rm32, Register.EBX, At()),
            Instruction.Create(Code.Push_rm32, At()),
            Instruction.Create(Code.Pop_rm32, new MemoryOperand(Register.ESP, -8)),
            Instruction.CreateRepMovsb(32),
            Instruction.CreateRepStosd(32),
            Instruction.CreateRepeCmpsw(32),
            Instruction.CreateRepneScasb(32),
            Instruction.CreateLodsd(32),
            Instruction.Create(Code.Xchg_rm8_r8, AtEsi(), Register.BH),
            Instruction.Create(Code.Enterd_imm16_imm8, 12, 3),
            Instruction.Create(Code.Leaved),
            Instruction.Create(Code.Pushad),
            Instruction.Create(Code.Popad),
        ];
        foreach (Instruction i in list) yield return new TestCaseData(i).SetArgDisplayNames(i.ToString());
    }

    [TestCaseSource(nameof(Instructions))]
    public void MatchesUnicornOnMemoryOperands(Instruction instruction)
    {
        using Unicorn? unicorn = Unicorn.TryCreate();
        if (unicorn is null) Assert.Ignore("libunicorn.so.2 not available");
        var m = new TestMachine();
        byte[] code = m.Load(asm => asm.AddInstruction(instruction));
        unicorn.Write(TestMachine.CodeBase, code);
        var failures = new List<string>();
        int[] regIds = [Unicorn.RegEax, Unicorn.RegEcx, Unicorn.RegEdx, Unicorn.RegEbx,
            Unicorn.RegEsp, Unicorn.RegEbp, Unicorn.RegEsi, Unicorn.RegEdi];
        var random = new Random(7);
        foreach (uint flagsIn in new uint[] { 0x2, 0x403, 0x8d7 })
        {
            foreach (uint a in Values)
            {
                foreach (uint b in Values)
                {
                    var window = new byte[Window];
                    random.NextBytes(window);
                    BitConverter.GetBytes(a).CopyTo(window, Window / 2);
                    m.WriteBytes(Data - Window / 2, window);
                    unicorn.Write(Data - Window / 2, window);
                    uint[] regs = [b ^ 0x5a, b % 40, 0x12345678, b, Data - 0x20, Data + 0x40, Data, Data + 0x10];
                    if ((flagsIn & 0x400) != 0) regs[1] = 3;
                    m.Cpu.Eip = TestMachine.CodeBase;
                    m.Cpu.Eflags = flagsIn;
                    unicorn.SetReg(Unicorn.RegEflags, flagsIn);
                    for (int r = 0; r < 8; r++)
                    {
                        m.Cpu[(Gpr)r] = regs[r];
                        unicorn.SetReg(regIds[r], regs[r]);
                    }
                    uint end = TestMachine.CodeBase + (uint)code.Length;
                    CpuExit exit = m.Cpu.Run(1);
                    // Unicorn counts each REP iteration as an instruction, so REP forms run to the end address instead.
                    int count = instruction.HasRepPrefix || instruction.HasRepnePrefix ? 0 : 1;
                    bool ok = unicorn.Run(TestMachine.CodeBase, end, count) && unicorn.GetReg(Unicorn.RegEip) == end;
                    bool coreOk = exit.Reason == CpuExitReason.BudgetExhausted;
                    string input = $"a={a:x} b={b:x} flags={flagsIn:x}";
                    if (ok != coreOk) { failures.Add($"{input}: unicorn ok={ok} core {exit.Reason}"); continue; }
                    if (!ok) continue;
                    for (int r = 0; r < 8; r++)
                    {
                        if (m.Cpu[(Gpr)r] != unicorn.GetReg(regIds[r]))
                            failures.Add($"{input}: {(Gpr)r} core {m.Cpu[(Gpr)r]:x} unicorn {unicorn.GetReg(regIds[r]):x}");
                    }
                    uint uf = unicorn.GetReg(Unicorn.RegEflags) & F.Status, cf = m.Cpu.Eflags & F.Status;
                    if (uf != cf) failures.Add($"{input}: flags core {cf:x} unicorn {uf:x}");
                    byte[] coreBytes = m.Memory.Bytes.Slice((int)(Data - Window / 2), Window).ToArray();
                    if (!coreBytes.SequenceEqual(unicorn.Read(Data - Window / 2, Window))) failures.Add($"{input}: memory differs");
                    byte[] coreStack = m.Memory.Bytes.Slice((int)(Data - 0x60), 0x60).ToArray();
                    if (!coreStack.SequenceEqual(unicorn.Read(Data - 0x60, 0x60))) failures.Add($"{input}: stack differs");
                }
            }
        }
        Assert.That(failures, Is.Empty, () => $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(8)));
    }
}
