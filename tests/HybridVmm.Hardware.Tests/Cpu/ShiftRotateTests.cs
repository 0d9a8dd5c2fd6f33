using HybridVmm.Hardware.Cpu;
using Iced.Intel;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>Shifts, rotates and double shifts by 1, imm8 and CL, against the SDM pseudo-code.</summary>
public class ShiftRotateTests
{
    private static readonly int[] Counts = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33];

    private static Code ByCl(string op, int size) => (op, size) switch
    {
        ("shl", 1) => Code.Shl_rm8_CL, ("shl", 2) => Code.Shl_rm16_CL, ("shl", 4) => Code.Shl_rm32_CL,
        ("shr", 1) => Code.Shr_rm8_CL, ("shr", 2) => Code.Shr_rm16_CL, ("shr", 4) => Code.Shr_rm32_CL,
        ("sar", 1) => Code.Sar_rm8_CL, ("sar", 2) => Code.Sar_rm16_CL, ("sar", 4) => Code.Sar_rm32_CL,
        ("rol", 1) => Code.Rol_rm8_CL, ("rol", 2) => Code.Rol_rm16_CL, ("rol", 4) => Code.Rol_rm32_CL,
        ("ror", 1) => Code.Ror_rm8_CL, ("ror", 2) => Code.Ror_rm16_CL, ("ror", 4) => Code.Ror_rm32_CL,
        ("rcl", 1) => Code.Rcl_rm8_CL, ("rcl", 2) => Code.Rcl_rm16_CL, ("rcl", 4) => Code.Rcl_rm32_CL,
        ("rcr", 1) => Code.Rcr_rm8_CL, ("rcr", 2) => Code.Rcr_rm16_CL, ("rcr", 4) => Code.Rcr_rm32_CL,
        _ => throw new ArgumentException(op),
    };

    private static Code ByImm(string op, int size) => Enum.Parse<Code>(ByCl(op, size).ToString().Replace("_CL", "_imm8"));

    private static Register Acc(int size) => size switch { 1 => Register.AL, 2 => Register.AX, _ => Register.EAX };

    [Test]
    public void ShiftOrRotateByClMatchesSdmPseudoCode(
        [Values("shl", "shr", "sar", "rol", "ror", "rcl", "rcr")] string op,
        [Values(1, 2, 4)] int size,
        [Values(0x2u, 0x8d7u, 0x0c5u)] uint flagsIn)
    {
        var m = new TestMachine();
        Instruction instruction = Instruction.Create(ByCl(op, size), Acc(size), Register.CL);
        Assert.Multiple(() =>
        {
            foreach (uint a in ArithmeticFlagsTests.EdgeValues)
            {
                foreach (int count in Counts)
                {
                    var expected = SdmReference.Shift(op, size, a, count, flagsIn);
                    var (eax, flags) = ArithmeticFlagsTests.RunOne(m, instruction, a, (uint)count, flagsIn);
                    uint care = F.Status & ~expected.Undefined;
                    Assert.That(eax & SdmReference.Mask(size), Is.EqualTo(expected.Value), $"{op}{size * 8} {a:x} by {count}");
                    Assert.That(flags & care, Is.EqualTo(expected.Flags & care), $"{op}{size * 8} {a:x} by {count} flags");
                }
            }
        });
    }

    [Test]
    public void ShiftByImmediateAndByOneMatchClForm([Values("shl", "shr", "sar", "rol", "ror", "rcl", "rcr")] string op)
    {
        var m = new TestMachine();
        var (byImm, flagsImm) = ArithmeticFlagsTests.RunOne(m, Instruction.Create(ByImm(op, 4), Register.EAX, 5), 0x80000001, 0, 0x3);
        var (byCl, flagsCl) = ArithmeticFlagsTests.RunOne(m, Instruction.Create(ByCl(op, 4), Register.EAX, Register.CL), 0x80000001, 5, 0x3);
        Assert.That((byImm, flagsImm), Is.EqualTo((byCl, flagsCl)));
        Code byOne = Enum.Parse<Code>(ByCl(op, 4).ToString().Replace("_CL", "_1"));
        var (one, flagsOne) = ArithmeticFlagsTests.RunOne(m, Instruction.Create(byOne, Register.EAX, 1), 0x80000001, 0, 0x3);
        var (oneCl, flagsOneCl) = ArithmeticFlagsTests.RunOne(m, Instruction.Create(ByCl(op, 4), Register.EAX, Register.CL), 0x80000001, 1, 0x3);
        Assert.That((one, flagsOne), Is.EqualTo((oneCl, flagsOneCl)));
    }

    // Hand-checked rows for counts 0, 1, 31 and 32 (masked to 0): flags from the SDM, OF only at count 1.
    [TestCase("shl", 4, 0x80000001u, 1, 0x00000002u, F.CF | F.OF)]
    [TestCase("shl", 4, 0x80000001u, 31, 0x80000000u, F.SF | F.PF)]
    [TestCase("shr", 4, 0x80000001u, 1, 0x40000000u, F.CF | F.OF | F.PF)]
    [TestCase("shr", 4, 0x80000001u, 31, 0x00000001u, 0u)]
    [TestCase("sar", 4, 0x80000001u, 1, 0xc0000000u, F.CF | F.SF | F.PF)]
    [TestCase("sar", 4, 0x80000001u, 31, 0xffffffffu, F.SF | F.PF)]
    [TestCase("rol", 4, 0x80000001u, 1, 0x00000003u, F.CF | F.OF)]
    [TestCase("ror", 4, 0x80000001u, 1, 0xc0000000u, F.CF)]
    [TestCase("shl", 1, 0x81u, 1, 0x02u, F.CF | F.OF)]
    [TestCase("sar", 1, 0x81u, 1, 0xc0u, F.CF | F.SF | F.PF)]
    [TestCase("shr", 2, 0x8001u, 1, 0x4000u, F.CF | F.OF | F.PF)]
    public void EdgeCountsFollowSdm(string op, int size, uint value, int count, uint expected, uint expectedFlags)
    {
        var m = new TestMachine();
        var (eax, flags) = ArithmeticFlagsTests.RunOne(m, Instruction.Create(ByCl(op, size), Acc(size), Register.CL), value, (uint)count, 0x2);
        uint care = count == 1 ? F.Status & ~F.AF : F.Status & ~(F.AF | F.OF);
        Assert.That(eax & SdmReference.Mask(size), Is.EqualTo(expected));
        Assert.That(flags & care, Is.EqualTo(expectedFlags & care));
    }

    [TestCase("shl", 4)]
    [TestCase("sar", 1)]
    [TestCase("rol", 2)]
    [TestCase("rcr", 4)]
    public void MaskedCountZeroLeavesOperandAndFlagsUnchanged(string op, int size)
    {
        var m = new TestMachine();
        var (eax, flags) = ArithmeticFlagsTests.RunOne(m, Instruction.Create(ByCl(op, size), Acc(size), Register.CL), 0x80000001, 32, 0x8d7);
        Assert.That(eax, Is.EqualTo(0x80000001));
        Assert.That(flags, Is.EqualTo(0x8d7));
    }

    // SHLD/SHRD (SDM Vol. 2B): dest shifted, vacated bits filled from the source; CF = last bit out.
    [TestCase(Code.Shld_rm32_r32_CL, 0x12345678u, 0x9abcdef0u, 4, 0x23456789u, F.CF)]
    [TestCase(Code.Shld_rm32_r32_CL, 0x80000000u, 0x00000000u, 1, 0x00000000u, F.CF | F.OF | F.ZF | F.PF)]
    [TestCase(Code.Shrd_rm32_r32_CL, 0x12345678u, 0x9abcdef0u, 4, 0x01234567u, F.CF)]
    [TestCase(Code.Shrd_rm32_r32_CL, 0x00000001u, 0xffffffffu, 1, 0x80000000u, F.CF | F.OF | F.SF | F.PF)]
    [TestCase(Code.Shld_rm16_r16_CL, 0x1234u, 0xabcdu, 8, 0x34abu, 0u)]
    [TestCase(Code.Shrd_rm16_r16_CL, 0x1234u, 0xabcdu, 8, 0xcd12u, F.SF | F.PF)]
    [TestCase(Code.Shld_rm32_r32_CL, 0x12345678u, 0x9abcdef0u, 0, 0x12345678u, 0u)]
    public void DoubleShiftFillsFromSource(Code code, uint dest, uint src, int count, uint expected, uint expectedFlags)
    {
        var m = new TestMachine();
        Register d = code.ToString().Contains("16") ? Register.AX : Register.EAX;
        Register s = code.ToString().Contains("16") ? Register.BX : Register.EBX;
        m.Load(asm =>
        {
            asm.AddInstruction(Instruction.Create(code, d, s, Register.CL));
            asm.hlt();
        });
        m.Cpu[Gpr.Eax] = dest;
        m.Cpu[Gpr.Ebx] = src;
        m.Cpu[Gpr.Ecx] = (uint)count;
        m.RunToHalt();
        uint care = count == 1 ? F.Status & ~F.AF : F.Status & ~(F.AF | F.OF);
        Assert.That(m.Cpu[Gpr.Eax] & (d == Register.AX ? 0xffffu : 0xffffffffu), Is.EqualTo(expected));
        Assert.That(m.Cpu.Eflags & care, Is.EqualTo(expectedFlags & care));
    }
}
