using HybridVmm.Hardware.Cpu;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>MOVS/STOS/LODS/CMPS/SCAS with and without REP prefixes, both directions (SDM Vol. 2B, REP).</summary>
public class StringTests
{
    private const uint Src = TestMachine.DataBase;
    private const uint Dst = TestMachine.DataBase + 0x100;

    [Test]
    public void RepMovsbCopiesForwards()
    {
        var m = new TestMachine();
        m.WriteBytes(Src, "hello, world"u8);
        m.Execute(asm =>
        {
            asm.mov(esi, Src);
            asm.mov(edi, Dst);
            asm.mov(ecx, 12);
            asm.rep.movsb();
        });
        Assert.That(m.Memory.Bytes.Slice((int)Dst, 12).ToArray(), Is.EqualTo("hello, world"u8.ToArray()));
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edi], m.Cpu[Gpr.Ecx]), Is.EqualTo((Src + 12, Dst + 12, 0u)));
    }

    [Test]
    public void RepMovsdBackwardsHandlesOverlappingMemmove()
    {
        var m = new TestMachine();
        for (uint i = 0; i < 4; i++) m.Write32(Src + 4 * i, 0x100 + i);
        m.Execute(asm =>
        {
            asm.std();
            asm.mov(esi, Src + 12);     // last element
            asm.mov(edi, Src + 16);     // shifted up by one element, overlapping
            asm.mov(ecx, 4);
            asm.rep.movsd();
            asm.cld();
        });
        for (uint i = 0; i < 4; i++) Assert.That(m.Read32(Src + 4 + 4 * i), Is.EqualTo(0x100 + i));
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edi]), Is.EqualTo((Src - 4, Src)));
    }

    [Test]
    public void RepStoswFillsAndZeroCountDoesNothing()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(eax, 0xbeef);
            asm.mov(edi, Dst);
            asm.mov(ecx, 3);
            asm.rep.stosw();
            asm.xor(ecx, ecx);
            asm.rep.stosw();          // ECX = 0: no store, EDI unchanged
        });
        Assert.That(m.Read32(Dst), Is.EqualTo(0xbeefbeef));
        Assert.That(m.Read32(Dst + 4) & 0xffff, Is.EqualTo(0xbeef));
        Assert.That(m.Read32(Dst + 6), Is.EqualTo(0));
        Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(Dst + 6));
    }

    [Test]
    public void LodsLoadsAccumulatorAndAdvances()
    {
        var m = new TestMachine();
        m.Write32(Src, 0x44332211);
        m.Execute(asm =>
        {
            asm.mov(eax, 0xffffffff);
            asm.mov(esi, Src);
            asm.lodsb();
            asm.mov(ebx, eax);
            asm.lodsw();
        });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0xffffff11));
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0xffff3322));
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(Src + 3));
    }

    [Test]
    public void RepeCmpsbStopsAfterFirstMismatch()
    {
        var m = new TestMachine();
        m.WriteBytes(Src, "abcdef"u8);
        m.WriteBytes(Dst, "abcxef"u8);
        m.Execute(asm =>
        {
            asm.mov(esi, Src);
            asm.mov(edi, Dst);
            asm.mov(ecx, 6);
            asm.repe.cmpsb();
        });
        Assert.That((m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Esi]), Is.EqualTo((2u, Src + 4)));
        // 'd' - 'x' borrows and is negative: CF=1, SF=1, ZF=0.
        Assert.That(m.Cpu.Eflags & (F.CF | F.ZF | F.SF), Is.EqualTo(F.CF | F.SF));
    }

    [Test]
    public void RepneScasbFindsTerminatingZero()
    {
        var m = new TestMachine();
        m.WriteBytes(Src, "length\0"u8);
        m.Execute(asm =>
        {
            asm.xor(eax, eax);
            asm.mov(edi, Src);
            asm.mov(ecx, -1);
            asm.repne.scasb();
            asm.mov(edx, ecx);
            asm.not(ecx);
            asm.dec(ecx);
        });
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(6), "strlen idiom");
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(unchecked((uint)-8)), "stopped after the zero byte");
    }

    [Test]
    public void ScasdBackwardsComparesWithEax()
    {
        var m = new TestMachine();
        m.Write32(Dst, 7);
        m.Execute(asm =>
        {
            asm.std();
            asm.mov(eax, 7);
            asm.mov(edi, Dst);
            asm.scasd();
            asm.cld();
        });
        Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(Dst - 4));
        Assert.That(m.Cpu.Eflags & F.ZF, Is.EqualTo(F.ZF));
    }

    [Test]
    public void RepMovsbIntoUnmappedPageKeepsCompletedIterationsAndResumes()
    {
        var m = new TestMachine();
        m.Slat.Unmap(0x31);
        m.WriteBytes(Src, "0123456789"u8);
        m.Load(asm =>
        {
            asm.mov(esi, Src);
            asm.mov(edi, 0x30ffc);
            asm.mov(ecx, 10);
            asm.rep.movsb();
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.GuestPhysicalAddress, exit.IsWrite), Is.EqualTo((CpuExitReason.MemoryIntercept, 0x31000u, true)));
        Assert.That((m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Edi]), Is.EqualTo((6u, 0x31000u)), "four bytes were copied");
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + 15), "EIP stays on REP MOVSB");
        m.Slat.Map(0x31, 0x31, writable: true);
        m.RunToHalt();
        Assert.That(m.Memory.Bytes.Slice(0x30ffc, 10).ToArray(), Is.EqualTo("0123456789"u8.ToArray()));
    }
}
