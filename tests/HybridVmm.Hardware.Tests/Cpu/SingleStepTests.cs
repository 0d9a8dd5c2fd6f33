using HybridVmm.Hardware.Cpu;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>Single-step traps (SDM Vol. 3A 17.3.1.4): with TF set when an instruction begins, #DB follows it.</summary>
public class SingleStepTests
{
    private const uint Idt = 0x30000;
    private const uint IdtDescriptor = 0x2F000;
    private const uint Handler = 0x5000;

    // Under the translator every instruction is compiled at its first run: PUSHFD, the OR and the POPFD that sets TF
    // form a block, which must end at the POPFD so that the next instruction is single-stepped.
    [TestCase(ExecutionTier.Interpreter)]
    [TestCase(ExecutionTier.Jit)]
    public void EachInstructionThatBeginsWithTfSetIsFollowedByADebugTrapWithEipOnTheNextInstruction(ExecutionTier tier)
    {
        var m = new TestMachine();
        m.Cpu.Tier = tier;
        m.Cpu.JitHotThreshold = 1;
        m.Cpu.CompileInBackground = false;
        m.WriteBytes(IdtDescriptor, BitConverter.GetBytes((ushort)(256 * 8 - 1)));
        m.Write32(IdtDescriptor + 2, Idt);
        m.Write32(Idt + 8, (Handler & 0xffff) | (0x08u << 16));      // vector 1: interrupt gate
        m.Write32(Idt + 12, (Handler & 0xffff0000) | 0x8E00);
        m.Load(a =>
        {
            a.inc(esi);                          // traps taken
            a.mov(ebx, __dword_ptr[esp]);        // the pushed EIP
            a.pushfd(); a.pop(edi);              // TF inside the handler
            a.iretd();
        }, Handler);
        byte[] code = m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.xor(esi, esi);
            a.pushfd(); a.or(__dword_ptr[esp], 0x100); a.popfd();      // sets TF: no trap after this POPF
            a.mov(eax, 1);                                              // trap 1
            a.mov(eax, 2);                                              // trap 2
            a.pushfd();                                                 // trap 3
            a.and(__dword_ptr[esp], ~0x100);                            // trap 4
            a.popfd();                                                  // trap 5: TF was set when it began
            a.mov(eax, 3);                                              // no trap: TF is clear
            a.hlt();
        });
        m.RunToHalt();
        uint afterClearingPopf = TestMachine.CodeBase + (uint)code.Length - 6;   // mov eax, 3 (5 bytes) + hlt
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(5u));
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(afterClearingPopf), "a trap pushes the address of the next instruction");
            Assert.That(m.Cpu[Gpr.Edi] & 0x100, Is.Zero, "the handler runs with TF clear");
            Assert.That(m.Cpu.Eflags & 0x100, Is.Zero);
            Assert.That(m.Cpu.JitStatistics.BlockEntries > 0, Is.EqualTo(tier == ExecutionTier.Jit), "blocks ran under the translator only");
        });
    }

    [Test]
    public void ARepStringInstructionIsSteppedOneIterationAtATimeWithEipOnItWhileIterationsRemain()
    {
        var m = new TestMachine();
        m.WriteBytes(IdtDescriptor, BitConverter.GetBytes((ushort)(256 * 8 - 1)));
        m.Write32(IdtDescriptor + 2, Idt);
        m.Write32(Idt + 8, (Handler & 0xffff) | (0x08u << 16));
        m.Write32(Idt + 12, (Handler & 0xffff0000) | 0x8E00);
        const uint Log = 0x40000;
        m.Load(a =>
        {
            a.mov(edx, __dword_ptr[esp]);                  // the pushed EIP
            a.mov(__dword_ptr[esi * 4 + (int)Log], edx);
            a.inc(esi);
            a.iretd();
        }, Handler);
        byte[] code = m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.xor(esi, esi);
            a.mov(edi, TestMachine.DataBase); a.mov(ecx, 3); a.mov(al, 0x5A); a.cld();
            a.pushfd(); a.or(__dword_ptr[esp], 0x100); a.popfd();
            a.rep.stosb();                                 // three iterations, three traps
            a.hlt();
        });
        m.RunToHalt();
        uint rep = TestMachine.CodeBase + (uint)code.Length - 3;   // F3 AA, then HLT
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(3u));
            Assert.That(m.Read32(Log), Is.EqualTo(rep), "after the first iteration EIP is still on REP STOSB");
            Assert.That(m.Read32(Log + 4), Is.EqualTo(rep));
            Assert.That(m.Read32(Log + 8), Is.EqualTo(rep + 2), "after the last one it is on the next instruction");
            Assert.That(m.Cpu[Gpr.Ecx], Is.Zero);
            Assert.That(m.Read32(TestMachine.DataBase) & 0xFFFFFF, Is.EqualTo(0x5A5A5Au));
        });
    }

    [Test]
    public void WithoutAnIdtTheSingleStepTrapStopsTheGuestAfterTheSteppedInstruction()
    {
        var m = new TestMachine();
        m.Load(a =>
        {
            a.pushfd(); a.or(__dword_ptr[esp], 0x100); a.popfd();
            a.mov(eax, 0x1234);
            a.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.Multiple(() =>
        {
            Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Exception));
            Assert.That(exit.Vector, Is.EqualTo(ExceptionVector.Debug));
            Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x1234u), "the stepped instruction retired");
            Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(4));
        });
    }
}
