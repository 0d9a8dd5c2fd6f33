using HybridVmm.Hardware.Cpu;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// SYSENTER and SYSEXIT (SDM Vol. 2B): the flat ring-0 and ring-3 segments they load from IA32_SYSENTER_CS, the stack
/// and entry point from the other two MSRs, and the #GP(0) cases. The rings sample guest does the round trip under QEMU.
/// </summary>
public class FastSystemCallTests
{
    [Test]
    public void SysenterEntersRingZeroAtTheMsrsWithFlatSegmentsAndInterruptsOff()
    {
        var m = new TestMachine();
        m.Cpu.SysenterCs = 0x60;
        m.Cpu.SysenterEsp = 0x7000;
        m.Cpu.SysenterEip = 0x5000;
        m.Load(a => a.hlt(), 0x5000);
        m.Load(a => { a.sti(); a.sysenter(); });
        m.Cpu.Run(10);
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu.Eip, Is.EqualTo(0x5001u), "HLT at SYSENTER_EIP retired");
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(0x7000u));
            Assert.That((m.Cpu.Cs, m.Cpu.Ss), Is.EqualTo(((ushort)0x60, (ushort)0x68)));
            Assert.That(m.Cpu.Eflags & 0x200u, Is.Zero, "IF cleared");
        });
    }

    [Test]
    public void SysexitReturnsToRingThreeAtEdxWithTheStackInEcx()
    {
        var m = new TestMachine();
        m.Cpu.SysenterCs = 0x60;
        m.Load(a => { a.mov(ecx, 0x9000); a.mov(edx, 0x6000); a.sysexit(); });
        CpuExit exit = m.Cpu.Run(3);
        Assert.Multiple(() =>
        {
            Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.BudgetExhausted));
            Assert.That(m.Cpu.Eip, Is.EqualTo(0x6000u));
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(0x9000u));
            Assert.That((m.Cpu.Cs, m.Cpu.Ss), Is.EqualTo(((ushort)0x73, (ushort)0x7B)), "SYSENTER_CS + 16 and + 24, RPL 3");
            Assert.That((m.Cpu.SaveState().SegmentCaches!.Value.Cs.Attributes >> 5) & 3, Is.EqualTo(3), "CPL 3: CS.DPL");
        });
    }

    /// <summary>RDTSCP (SDM Vol. 2B): EDX:EAX as RDTSC would read them, ECX = IA32_TSC_AUX.</summary>
    [Test]
    public void RdtscpReadsTheCounterAndTscAux()
    {
        var m = new TestMachine();
        m.Cpu.TscAux = 0x1234;
        m.Cpu.TscOffset = 0x1_0000_0000;
        m.Load(a => { a.nop(); a.nop(); a.rdtscp(); a.hlt(); });
        m.RunToHalt();
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Edx], m.Cpu[Gpr.Ecx]), Is.EqualTo((2u, 1u, 0x1234u)), "two instructions retired before it, plus the offset");
    }

    [Test]
    public void SysenterWithANullSysenterCsIsGeneralProtection()
    {
        var m = new TestMachine();
        m.Load(a => a.sysenter());
        CpuExit exit = m.Cpu.Run(1);
        Assert.That((exit.Reason, exit.Vector, exit.ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.GeneralProtection, 0u)));
    }

    [Test]
    public void SysexitWithANullSysenterCsIsGeneralProtection()
    {
        var m = new TestMachine();
        m.Load(a => a.sysexit());
        CpuExit exit = m.Cpu.Run(1);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.GeneralProtection)));
    }
}
