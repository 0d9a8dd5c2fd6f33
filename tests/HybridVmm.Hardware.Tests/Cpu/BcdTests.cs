using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>Decimal adjust instructions, expected values worked through the SDM Vol. 2A pseudo-code.</summary>
public class BcdTests
{
    // 79 + 35 = 114: ADD gives AE (AF=0, CF=0); DAA adds 6 (low nibble > 9) then 60 (AL > 99) -> 14, CF=1, AF=1.
    [TestCase(0x79u, 0x35u, 0x14u, F.CF | F.AF | F.PF)]
    // 15 + 27 = 42: ADD gives 3C; DAA adds 6 -> 42, AF=1, CF=0.
    [TestCase(0x15u, 0x27u, 0x42u, F.AF | F.PF)]
    // 99 + 01 = 100: ADD gives 9A; DAA: +6 -> A0, old AL 9A > 99 -> +60 -> 00, CF=1.
    [TestCase(0x99u, 0x01u, 0x00u, F.CF | F.AF | F.ZF | F.PF)]
    public void DaaAdjustsPackedBcdSum(uint a, uint b, uint expected, uint expectedFlags)
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = a;
        m.Cpu[Gpr.Ebx] = b;
        m.Execute(asm => { asm.add(al, bl); asm.daa(); });
        Assert.That(m.Cpu[Gpr.Eax] & 0xff, Is.EqualTo(expected));
        Assert.That(m.Cpu.Eflags & (F.CF | F.AF | F.ZF | F.SF | F.PF), Is.EqualTo(expectedFlags));
    }

    // 35 - 47 = -12: SUB gives EE (CF=1, AF=1); DAS: -6 -> E8, then -60 -> 88, CF=1.
    [TestCase(0x35u, 0x47u, 0x88u, F.CF | F.AF | F.SF | F.PF)]
    // 42 - 15 = 27: SUB gives 2D (AF=1); DAS: -6 -> 27, CF=0.
    [TestCase(0x42u, 0x15u, 0x27u, F.AF | F.PF)]
    public void DasAdjustsPackedBcdDifference(uint a, uint b, uint expected, uint expectedFlags)
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = a;
        m.Cpu[Gpr.Ebx] = b;
        m.Execute(asm => { asm.sub(al, bl); asm.das(); });
        Assert.That(m.Cpu[Gpr.Eax] & 0xff, Is.EqualTo(expected));
        Assert.That(m.Cpu.Eflags & (F.CF | F.AF | F.ZF | F.SF | F.PF), Is.EqualTo(expectedFlags));
    }

    [Test]
    public void AaaAndAasAdjustUnpackedBcd()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = 0x0008;
        m.Execute(asm => { asm.add(al, 6); asm.aaa(); });
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(0x0104));
        Assert.That(m.Cpu.Eflags & (F.CF | F.AF), Is.EqualTo(F.CF | F.AF));

        m.Cpu[Gpr.Eax] = 0x0203;
        m.Execute(asm => { asm.sub(al, 5); asm.aas(); });
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(0x0108));
        Assert.That(m.Cpu.Eflags & (F.CF | F.AF), Is.EqualTo(F.CF | F.AF));

        m.Cpu[Gpr.Eax] = 0x0004;
        m.Execute(asm => { asm.add(al, 3); asm.aaa(); });
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(0x0007));
        Assert.That(m.Cpu.Eflags & (F.CF | F.AF), Is.EqualTo(0));
    }

    [Test]
    public void AamSplitsAndAadJoinsDigits()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = 63;
        m.Execute(asm => asm.aam(10));
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(0x0603));
        Assert.That(m.Cpu.Eflags & (F.ZF | F.SF | F.PF), Is.EqualTo(F.PF));
        m.Execute(asm => asm.aad(10));
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(63));
        Assert.That(m.Cpu.Eflags & (F.ZF | F.SF | F.PF), Is.EqualTo(F.PF));
    }

    [Test]
    public void AamWithZeroImmediateRaisesDivideError()
    {
        var m = new TestMachine();
        m.Load(asm => asm.db(0xd4, 0x00));
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.DivideError)));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase));
    }
}
