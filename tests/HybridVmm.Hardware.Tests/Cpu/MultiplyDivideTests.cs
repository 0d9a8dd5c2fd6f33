using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>MUL/IMUL (CF=OF when the high half is significant, SDM Vol. 2A) and DIV/IDIV including #DE.</summary>
public class MultiplyDivideTests
{
    [TestCase(1, 0x80u, 2u, 0x100u, 0u, true)]
    [TestCase(1, 0x0fu, 0x0fu, 0xe1u, 0u, false)]
    [TestCase(2, 0xffffu, 0xffffu, 0x0001u, 0xfffeu, true)]
    [TestCase(4, 0xffffffffu, 0xffffffffu, 0x00000001u, 0xfffffffeu, true)]
    [TestCase(4, 2u, 3u, 6u, 0u, false)]
    public void MulStoresDoubleWidthProductAndFlagsSignificantHighHalf(int size, uint a, uint b, uint low, uint high, bool overflow)
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = a;
        m.Cpu[Gpr.Ebx] = b;
        m.Cpu[Gpr.Edx] = 0;
        m.Execute(asm =>
        {
            if (size == 1) asm.mul(bl);
            else if (size == 2) asm.mul(bx);
            else asm.mul(ebx);
        });
        uint expectedFlags = overflow ? F.CF | F.OF : 0;
        Assert.That(m.Cpu.Eflags & (F.CF | F.OF), Is.EqualTo(expectedFlags));
        if (size == 1)
        {
            Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(low));
        }
        else
        {
            Assert.That(m.Cpu[Gpr.Eax] & SdmReference.Mask(size), Is.EqualTo(low));
            Assert.That(m.Cpu[Gpr.Edx] & SdmReference.Mask(size), Is.EqualTo(high));
        }
    }

    [Test]
    public void ImulOneOperandSignExtendsAndFlagsOverflow()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = 0x80;  // -128
        m.Cpu[Gpr.Ebx] = 0xff;  // -1
        m.Execute(asm => asm.imul(bl));
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(0x0080));
        Assert.That(m.Cpu.Eflags & (F.CF | F.OF), Is.EqualTo(F.CF | F.OF));

        m.Cpu[Gpr.Eax] = unchecked((uint)-5);
        m.Cpu[Gpr.Ebx] = 7;
        m.Execute(asm => asm.imul(ebx));
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(unchecked((uint)-35)));
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(0xffffffff));
        Assert.That(m.Cpu.Eflags & (F.CF | F.OF), Is.EqualTo(0));
    }

    [Test]
    public void ImulTwoAndThreeOperandFormsTruncate()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = 0x7fffffff;
        m.Cpu[Gpr.Ebx] = 2;
        m.Execute(asm => asm.imul(eax, ebx));
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0xfffffffe));
        Assert.That(m.Cpu.Eflags & (F.CF | F.OF), Is.EqualTo(F.CF | F.OF));

        m.Cpu[Gpr.Ebx] = 5;
        m.Execute(asm => asm.imul(ecx, ebx, -3));
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(unchecked((uint)-15)));
        Assert.That(m.Cpu.Eflags & (F.CF | F.OF), Is.EqualTo(0));

        m.Cpu[Gpr.Eax] = 0x100;
        m.Write32(TestMachine.DataBase, 0x100);
        m.Execute(asm => asm.imul(ax, __word_ptr[TestMachine.DataBase]));
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(0));
        Assert.That(m.Cpu.Eflags & (F.CF | F.OF), Is.EqualTo(F.CF | F.OF));

        m.Execute(asm => asm.imul(edx, __dword_ptr[TestMachine.DataBase], 1000));
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(256000));
    }

    [Test]
    public void DivAndIdivProduceQuotientAndRemainder()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Edx] = 1;
        m.Cpu[Gpr.Eax] = 0;
        m.Cpu[Gpr.Ebx] = 2;
        m.Execute(asm => asm.div(ebx));
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Edx]), Is.EqualTo((0x80000000u, 0u)));

        m.Cpu[Gpr.Eax] = unchecked((uint)-7);
        m.Cpu[Gpr.Edx] = 0xffffffff;
        m.Cpu[Gpr.Ebx] = 2;
        m.Execute(asm => asm.idiv(ebx));
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Edx]), Is.EqualTo((unchecked((uint)-3), unchecked((uint)-1))));

        m.Cpu[Gpr.Eax] = 1000;
        m.Cpu[Gpr.Ebx] = 7;
        m.Execute(asm => asm.div(bl));
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo((6 << 8) | 142));

        m.Cpu[Gpr.Eax] = 0x12345;
        m.Cpu[Gpr.Edx] = 0xffff0000;
        m.Cpu[Gpr.Ebx] = 0x10;
        m.Execute(asm => asm.div(bx));
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x10234u), "AX = 0x2345/0x10, upper half kept");
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(0xffff0005u));
    }

    [TestCase("div32 by zero", 0u, 5u, 0u)]
    [TestCase("div32 quotient overflow", 2u, 0u, 1u)]
    [TestCase("idiv32 most negative by -1", 0x80000000u, 0u, 0xffffffffu)]
    public void DivideErrorLeavesStateAtFaultingInstruction(string name, uint edx, uint eax, uint divisor)
    {
        var m = new TestMachine();
        m.Load(asm =>
        {
            asm.nop();
            if (name.StartsWith("idiv")) asm.idiv(ecx); else asm.div(ecx);
            asm.hlt();
        });
        m.Cpu[Gpr.Edx] = edx;
        m.Cpu[Gpr.Eax] = eax;
        m.Cpu[Gpr.Ecx] = divisor;
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Exception));
        Assert.That(exit.Vector, Is.EqualTo(ExceptionVector.DivideError));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + 1));
        Assert.That((m.Cpu[Gpr.Edx], m.Cpu[Gpr.Eax]), Is.EqualTo((edx, eax)));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(1), "the faulting DIV does not retire");
        Assert.That(m.Cpu.DescribeState(), Does.Contain("div ecx").And.Contain("EIP=00001001"));
    }

    [Test]
    public void IdivByteMostNegativeByMinusOneRaisesDivideError()
    {
        var m = new TestMachine();
        m.Load(asm => asm.idiv(bl));
        m.Cpu[Gpr.Eax] = 0x8000;
        m.Cpu[Gpr.Ebx] = 0xff;
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.DivideError)));
    }
}
