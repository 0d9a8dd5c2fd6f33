using HybridVmm.Hardware.Cpu;
using Iced.Intel;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>ADD/ADC/SUB/SBB/CMP/AND/OR/XOR/TEST/INC/DEC/NEG results and flags on edge values, for each operand size.</summary>
public class ArithmeticFlagsTests
{
    internal static readonly uint[] EdgeValues = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

    private static Register Acc(int size) => size switch { 1 => Register.AL, 2 => Register.AX, _ => Register.EAX };
    private static Register Other(int size) => size switch { 1 => Register.BL, 2 => Register.BX, _ => Register.EBX };

    private static Code BinaryCode(string op, int size) => (op, size) switch
    {
        ("add", 1) => Code.Add_rm8_r8, ("add", 2) => Code.Add_rm16_r16, ("add", 4) => Code.Add_rm32_r32,
        ("adc", 1) => Code.Adc_rm8_r8, ("adc", 2) => Code.Adc_rm16_r16, ("adc", 4) => Code.Adc_rm32_r32,
        ("sub", 1) => Code.Sub_rm8_r8, ("sub", 2) => Code.Sub_rm16_r16, ("sub", 4) => Code.Sub_rm32_r32,
        ("sbb", 1) => Code.Sbb_rm8_r8, ("sbb", 2) => Code.Sbb_rm16_r16, ("sbb", 4) => Code.Sbb_rm32_r32,
        ("cmp", 1) => Code.Cmp_rm8_r8, ("cmp", 2) => Code.Cmp_rm16_r16, ("cmp", 4) => Code.Cmp_rm32_r32,
        ("and", 1) => Code.And_rm8_r8, ("and", 2) => Code.And_rm16_r16, ("and", 4) => Code.And_rm32_r32,
        ("or", 1) => Code.Or_rm8_r8, ("or", 2) => Code.Or_rm16_r16, ("or", 4) => Code.Or_rm32_r32,
        ("xor", 1) => Code.Xor_rm8_r8, ("xor", 2) => Code.Xor_rm16_r16, ("xor", 4) => Code.Xor_rm32_r32,
        ("test", 1) => Code.Test_rm8_r8, ("test", 2) => Code.Test_rm16_r16, ("test", 4) => Code.Test_rm32_r32,
        _ => throw new ArgumentException(op),
    };

    private static Code UnaryCode(string op, int size) => (op, size) switch
    {
        ("inc", 1) => Code.Inc_rm8, ("inc", 2) => Code.Inc_rm16, ("inc", 4) => Code.Inc_rm32,
        ("dec", 1) => Code.Dec_rm8, ("dec", 2) => Code.Dec_rm16, ("dec", 4) => Code.Dec_rm32,
        ("neg", 1) => Code.Neg_rm8, ("neg", 2) => Code.Neg_rm16, ("neg", 4) => Code.Neg_rm32,
        _ => throw new ArgumentException(op),
    };

    /// <summary>Runs one register-form instruction with EAX=a, EBX=b and the given EFLAGS; returns (EAX, EFLAGS).</summary>
    internal static (uint Eax, uint Flags) RunOne(TestMachine m, Instruction instruction, uint a, uint b, uint flags)
    {
        m.Load(asm =>
        {
            asm.AddInstruction(instruction);
            asm.hlt();
        });
        m.Cpu[Gpr.Eax] = a;
        m.Cpu[Gpr.Ebx] = b;
        m.Cpu[Gpr.Ecx] = b;
        m.Cpu.Eflags = flags;
        m.RunToHalt();
        return (m.Cpu[Gpr.Eax], m.Cpu.Eflags);
    }

    // Hand-checked rows (SDM Vol. 1, 3.4.3.1): the classic overflow and carry boundaries.
    [TestCase("add", 1, 0x7fu, 1u, 0x80u, F.OF | F.SF | F.AF)]
    [TestCase("add", 1, 0xffu, 1u, 0x00u, F.CF | F.ZF | F.PF | F.AF)]
    [TestCase("add", 1, 0x80u, 0x80u, 0x00u, F.CF | F.OF | F.ZF | F.PF)]
    [TestCase("add", 2, 0x7fffu, 1u, 0x8000u, F.OF | F.SF | F.AF | F.PF)]
    [TestCase("add", 4, 0x7fffffffu, 1u, 0x80000000u, F.OF | F.SF | F.AF | F.PF)]
    [TestCase("add", 4, 0xffffffffu, 1u, 0u, F.CF | F.ZF | F.PF | F.AF)]
    [TestCase("add", 4, 0x80000000u, 0x80000000u, 0u, F.CF | F.OF | F.ZF | F.PF)]
    [TestCase("sub", 1, 0x80u, 1u, 0x7fu, F.OF | F.AF)]
    [TestCase("sub", 1, 0u, 1u, 0xffu, F.CF | F.SF | F.AF | F.PF)]
    [TestCase("sub", 4, 0x80000000u, 1u, 0x7fffffffu, F.OF | F.AF | F.PF)]
    [TestCase("sub", 4, 0u, 1u, 0xffffffffu, F.CF | F.SF | F.AF | F.PF)]
    [TestCase("sub", 4, 5u, 5u, 0u, F.ZF | F.PF)]
    [TestCase("xor", 4, 0xffffffffu, 0xffffffffu, 0u, F.ZF | F.PF)]
    [TestCase("and", 1, 0x80u, 0xffu, 0x80u, F.SF)]
    [TestCase("or", 2, 0x8000u, 1u, 0x8001u, F.SF)]
    public void BinaryOperationSetsSdmFlags(string op, int size, uint a, uint b, uint expected, uint expectedFlags)
    {
        var m = new TestMachine();
        var (eax, flags) = RunOne(m, Instruction.Create(BinaryCode(op, size), Acc(size), Other(size)), a, b, 0x2);
        Assert.That(eax & SdmReference.Mask(size), Is.EqualTo(expected));
        Assert.That(flags & F.Status, Is.EqualTo(expectedFlags), m.Cpu.DescribeState());
    }

    [Test]
    public void BinaryOperationMatchesSdmOnAllEdgeValuePairs(
        [Values("add", "adc", "sub", "sbb", "cmp", "and", "or", "xor", "test")] string op,
        [Values(1, 2, 4)] int size,
        [Values(0x2u, 0x8d7u)] uint flagsIn)
    {
        var m = new TestMachine();
        Instruction instruction = Instruction.Create(BinaryCode(op, size), Acc(size), Other(size));
        Assert.Multiple(() =>
        {
            foreach (uint a in EdgeValues)
            {
                foreach (uint b in EdgeValues)
                {
                    var expected = SdmReference.Alu(op, size, a, b, flagsIn);
                    var (eax, flags) = RunOne(m, instruction, a, b, flagsIn);
                    uint resultExpected = op is "cmp" or "test" ? a & SdmReference.Mask(size) : expected.Value;
                    uint care = F.Status & ~expected.Undefined;
                    Assert.That(eax & SdmReference.Mask(size), Is.EqualTo(resultExpected), $"{op}{size * 8} {a:x} {b:x} result");
                    Assert.That(flags & care, Is.EqualTo(expected.Flags & care), $"{op}{size * 8} {a:x},{b:x} flags");
                    Assert.That(eax & ~SdmReference.Mask(size), Is.EqualTo(a & ~SdmReference.Mask(size)), "upper bits preserved");
                }
            }
        });
    }

    [Test]
    public void UnaryOperationMatchesSdmOnEdgeValues(
        [Values("inc", "dec", "neg")] string op,
        [Values(1, 2, 4)] int size,
        [Values(0x2u, 0x8d7u)] uint flagsIn)
    {
        var m = new TestMachine();
        Instruction instruction = Instruction.Create(UnaryCode(op, size), Acc(size));
        Assert.Multiple(() =>
        {
            foreach (uint a in EdgeValues)
            {
                var expected = SdmReference.Alu(op, size, a, 0, flagsIn);
                var (eax, flags) = RunOne(m, instruction, a, 0, flagsIn);
                Assert.That(eax & SdmReference.Mask(size), Is.EqualTo(expected.Value), $"{op}{size * 8} {a:x}");
                Assert.That(flags & F.Status, Is.EqualTo(expected.Flags), $"{op}{size * 8} {a:x} flags");
            }
        });
    }

    [TestCase(Code.Add_rm32_imm8, 0xfffffff0u, -1, 0xffffffefu, F.CF | F.SF)]
    [TestCase(Code.Sub_rm16_imm8, 0x0000u, 1, 0xffffu, F.CF | F.SF | F.AF | F.PF)]
    [TestCase(Code.Cmp_rm8_imm8, 0x10u, 0x10, 0x10u, F.ZF | F.PF)]
    [TestCase(Code.And_rm32_imm32, 0x12345678u, 0x0f0f0f0f, 0x02040608u, 0u)]
    public void ImmediateFormsOnMemoryOperands(Code code, uint initial, int immediate, uint expected, uint expectedFlags)
    {
        var m = new TestMachine();
        m.Write32(TestMachine.DataBase, initial);
        m.Load(asm =>
        {
            asm.AddInstruction(Instruction.Create(code, new MemoryOperand(Register.None, (long)TestMachine.DataBase), immediate));
            asm.hlt();
        });
        m.RunToHalt();
        Assert.That(m.Read32(TestMachine.DataBase), Is.EqualTo(expected));
        Assert.That(m.Cpu.Eflags & F.Status, Is.EqualTo(expectedFlags));
    }

    [Test]
    public void NotInvertsWithoutTouchingFlags([Values(1, 2, 4)] int size)
    {
        var m = new TestMachine();
        Code code = size switch { 1 => Code.Not_rm8, 2 => Code.Not_rm16, _ => Code.Not_rm32 };
        var (eax, flags) = RunOne(m, Instruction.Create(code, Acc(size)), 0x12345678, 0, 0x8d7);
        Assert.That(eax, Is.EqualTo(0x12345678 ^ SdmReference.Mask(size)));
        Assert.That(flags, Is.EqualTo(0x8d7));
    }
}
