using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

public class BasicExecutionTests
{
    [Test]
    public void LoopComputesSumAndHaltsAfterHlt()
    {
        var m = new TestMachine();
        byte[] code = m.Load(asm =>
        {
            var top = asm.CreateLabel();
            asm.xor(eax, eax);
            asm.mov(ecx, 100);
            asm.Label(ref top);
            asm.add(eax, ecx);
            asm.dec(ecx);
            asm.jnz(top);
            asm.hlt();
        });
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(5050));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + (uint)code.Length), "EIP points after HLT");
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(2 + 300 + 1));
    }

    [Test]
    public void RunReturnsBudgetExhaustedAfterExactlyTheBudget()
    {
        var m = new TestMachine();
        m.Load(asm =>
        {
            var top = asm.CreateLabel();
            asm.Label(ref top);
            asm.inc(eax);
            asm.jmp(top);
        });
        CpuExit exit = m.Cpu.Run(1001);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.BudgetExhausted));
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(501));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(1001));
    }

    [Test]
    public void ResetSetsFlatProtectedModeState()
    {
        var m = new TestMachine();
        m.Cpu.ResetToFlatProtectedMode(0x100000);
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu.Eip, Is.EqualTo(0x100000));
            Assert.That(m.Cpu.Eflags, Is.EqualTo(2));
            Assert.That(m.Cpu.Cr0 & 0x80000001, Is.EqualTo(1));
            Assert.That(m.Cpu.Cs, Is.EqualTo(0x08));
            Assert.That(m.Cpu.Ss, Is.EqualTo(0x10));
        });
    }

    [Test]
    public void MovForms_RegisterMemoryImmediateAndPartialRegisters()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(eax, 0x11223344);
            asm.mov(__dword_ptr[TestMachine.DataBase], eax);
            asm.mov(bl, __byte_ptr[TestMachine.DataBase + 1]);   // 0x33
            asm.mov(bh, 0x7f);
            asm.mov(cx, __word_ptr[TestMachine.DataBase + 2]);   // 0x1122
            asm.movzx(edx, __byte_ptr[TestMachine.DataBase + 3]); // 0x11
            asm.movsx(esi, bh);
            asm.mov(ah, 0x80);
            asm.movsx(edi, ah);
            asm.mov(__word_ptr[TestMachine.DataBase + 4], 0xbeef);
            asm.lea(ebp, __[eax + ecx * 4 + 0x10]);
        });
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x11228044));
            Assert.That(m.Cpu[Gpr.Ebx] & 0xffff, Is.EqualTo(0x7f33));
            Assert.That(m.Cpu[Gpr.Ecx] & 0xffff, Is.EqualTo(0x1122));
            Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(0x11));
            Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(0x7f));
            Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(0xffffff80));
            Assert.That(m.Read32(TestMachine.DataBase + 4) & 0xffff, Is.EqualTo(0xbeef));
            Assert.That(m.Cpu[Gpr.Ebp], Is.EqualTo(0x11228044u + m.Cpu[Gpr.Ecx] * 4 + 0x10));
        });
    }

    [Test]
    public void CallRetPushPopAndIndirectJumps()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            var func = asm.CreateLabel();
            var after = asm.CreateLabel();
            var table = asm.CreateLabel();
            asm.push(0x12345678);
            asm.push(-2);                  // push imm8 sign-extended
            asm.pop(ebx);
            asm.pop(__dword_ptr[TestMachine.DataBase]);
            asm.push(__dword_ptr[TestMachine.DataBase]);
            asm.pop(ecx);
            asm.push(3);
            asm.call(func);
            asm.mov(eax, TestMachine.DataBase + 8);
            asm.mov(__dword_ptr[eax], 0);  // patched below via LEA of label is awkward; use call through register
            asm.jmp(after);
            asm.Label(ref func);
            asm.mov(edx, __dword_ptr[esp + 4]);
            asm.ret(4);
            asm.Label(ref after);
            asm.nop();
            asm.Label(ref table);
        });
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0xfffffffe));
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(0x12345678));
            Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(3));
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
        });
    }

    [Test]
    public void IndirectCallThroughRegisterAndMemory()
    {
        var m = new TestMachine();
        const uint target = TestMachine.CodeBase + 0x800;
        m.Load(asm =>
        {
            asm.inc(esi);
            asm.ret();
        }, target);
        m.Write32(TestMachine.DataBase, target);
        m.Load(asm =>
        {
            asm.mov(eax, target);
            asm.call(eax);
            asm.call(__dword_ptr[TestMachine.DataBase]);
            asm.push(TestMachine.CodeBase + 0x400); // return address for the tail call
            asm.mov(ebx, TestMachine.DataBase);
            asm.jmp(__dword_ptr[ebx]);
        });
        m.Load(asm => asm.hlt(), TestMachine.CodeBase + 0x400);
        m.Cpu.Eip = TestMachine.CodeBase;
        m.Cpu[Gpr.Esi] = 0;
        m.Cpu[Gpr.Esp] = TestMachine.StackTop;
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(3));
    }
}
