using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu.Fpu;

/// <summary>CR0.EM/TS/MP/NE and the x87 (SDM Vol. 3A, 2.5 and table 2-2; Vol. 1, 8.7), FXSAVE alignment, saved state.</summary>
public class FpuSystemTests
{
    private static CpuExit RunOne(TestMachine m, uint cr0Bits, Action<Assembler> build)
    {
        m.Cpu.Cr0 |= cr0Bits;
        m.Load(a => { build(a); a.hlt(); });
        return m.Cpu.Run(100);
    }

    [TestCase((uint)Cr0Flags.TS, ExceptionVector.DeviceNotAvailable)]
    [TestCase((uint)Cr0Flags.EM, ExceptionVector.DeviceNotAvailable)]
    public void X87InstructionWithTsOrEmRaisesDeviceNotAvailable(uint bits, byte vector)
    {
        var m = new TestMachine();
        CpuExit exit = RunOne(m, bits, a => a.fld1());
        Assert.That((exit.Reason, exit.Vector, m.Cpu.Eip), Is.EqualTo((CpuExitReason.Exception, vector, TestMachine.CodeBase)));
    }

    [Test]
    public void WaitFaultsOnlyWithMpAndTs()
    {
        var m = new TestMachine();
        Assert.That(RunOne(m, (uint)Cr0Flags.TS, a => a.wait()).Reason, Is.EqualTo(CpuExitReason.Halt), "TS alone: WAIT runs");
        var m2 = new TestMachine();
        CpuExit exit = RunOne(m2, (uint)(Cr0Flags.TS | Cr0Flags.MP), a => a.wait());
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.DeviceNotAvailable)));
    }

    [Test]
    public void FxsaveWithEmIsInvalidOpcodeAndMisalignedIsGeneralProtection()
    {
        var m = new TestMachine();
        CpuExit exit = RunOne(m, (uint)Cr0Flags.EM, a => a.fxsave(__[TestMachine.DataBase]));
        Assert.That(exit.Vector, Is.EqualTo(ExceptionVector.InvalidOpcode));
        var m2 = new TestMachine();
        exit = RunOne(m2, 0, a => a.fxsave(__[TestMachine.DataBase + 8]));
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.GeneralProtection)));
    }

    [Test]
    public void UnmaskedZeroDivideRaisesMathFaultAtTheNextWaitingInstructionWithNe()
    {
        var m = new TestMachine();
        m.Write32(TestMachine.DataBase, 0x037B); // ZE unmasked
        CpuExit exit = RunOne(m, (uint)Cr0Flags.NE, a =>
        {
            a.fldcw(__word_ptr[TestMachine.DataBase]);
            a.fld1();
            a.fldz();
            a.fdivp(st1, st0);       // sets ZE and ES; the destination is untouched
            a.fnstsw(__word_ptr[TestMachine.DataBase + 4]); // no-wait: no #MF
            a.wait();               // #MF here
        });
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.MathFault)));
        Assert.That(m.Read32(TestMachine.DataBase + 4) & 0xFFFF, Is.EqualTo(0xB084), "B, TOP=6, ES, ZE");
        Assert.That(m.Cpu.Fpu.St(0), Is.EqualTo(Float80.Zero), "no pop, no result");
    }

    [Test]
    public void FnsaveStoresAndReinitialisesAndFrstorRestores()
    {
        var m = new TestMachine();
        m.Execute(a =>
        {
            a.fldpi();
            a.fld1();
            a.fnsave(__[TestMachine.DataBase]);
            a.fnstcw(__word_ptr[TestMachine.DataBase + 200]);
            a.frstor(__[TestMachine.DataBase]);
            a.faddp(st1, st0);
        });
        Assert.That(m.Read32(TestMachine.DataBase) & 0xFFFF, Is.EqualTo(0x037F));
        Assert.That((m.Read32(TestMachine.DataBase + 4) >> 11) & 7, Is.EqualTo(6), "TOP in the saved status word");
        Assert.That(m.Read32(TestMachine.DataBase + 8) & 0xFFFF, Is.EqualTo(0x0FFF), "FTW: two valid registers");
        Assert.That(m.Read32(TestMachine.DataBase + 200) & 0xFFFF, Is.EqualTo(0x037F), "FNINIT after FNSAVE");
        var env = new FpuEnvironment(FpuRounding.Nearest);
        Assert.That(m.Cpu.Fpu.St(0), Is.EqualTo(SoftFloat.Add(ref env, SoftFloat.Constant(FpuConstant.Pi, FpuRounding.Nearest), Float80.One)));
    }

    [Test]
    public void SavedStateCarriesTheFpu()
    {
        var m = new TestMachine();
        m.Execute(a => { a.fldl2t(); a.fldz(); });
        CpuState saved = m.Cpu.SaveState();
        var other = new TestMachine();
        other.Cpu.RestoreState(saved);
        Assert.That(other.Cpu.Fpu, Is.EqualTo(m.Cpu.Fpu));
        other.Cpu.RestoreState(saved with { Fpu = null });
        Assert.That(other.Cpu.Fpu, Is.EqualTo(FpuSavedState.Initial), "a state from before the FPU restores an FNINIT-ed FPU");
    }
}
