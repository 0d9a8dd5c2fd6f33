using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// The interrupt-window exit an external interrupt controller waits for (VMX "interrupt-window exiting"): it happens at
/// the first instruction boundary where the core can take a maskable interrupt, which the SDM defines (Vol. 3A, 6.8.1
/// and 6.8.3; Vol. 2B, STI and MOV): IF=1, and not right after an STI that set IF or after MOV SS / POP SS.
/// </summary>
public class InterruptWindowTests
{
    private const uint Idt = 0x30000;
    private const uint IdtDescriptor = 0x2F000;
    private const uint Handler = 0x5000;

    private static TestMachine Machine()
    {
        var m = new TestMachine();
        m.WriteBytes(IdtDescriptor, BitConverter.GetBytes((ushort)(256 * 8 - 1)));
        m.Write32(IdtDescriptor + 2, Idt);
        for (int vector = 0; vector < 256; vector++)
        {
            m.Write32(Idt + (uint)vector * 8, (Handler & 0xffff) | (0x08u << 16));
            m.Write32(Idt + (uint)vector * 8 + 4, (Handler & 0xffff0000) | 0x8E00);
        }

        // The handler records the EIP it interrupted in EDI and its own EFLAGS in EBP, and returns.
        m.Load(a =>
        {
            a.mov(edi, __dword_ptr[esp]);
            a.pushfd(); a.pop(ebp);
            a.iretd();
        }, Handler);
        return m;
    }

    /// <summary>Runs until the first exit that is not the budget running out.</summary>
    private static CpuExit RunToExit(TestMachine m)
    {
        CpuExit exit = m.Cpu.Run(1000);
        Assert.That(exit.Reason, Is.Not.EqualTo(CpuExitReason.BudgetExhausted), "the core ran to its budget without an exit");
        return exit;
    }

    [Test]
    public void TheWindowOpensOnlyAfterTheInstructionFollowingStiAndNotWhileIfIsClear()
    {
        TestMachine m = Machine();
        byte[] code = m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);  // 7 bytes
            a.mov(eax, 1);              // IF=0 here: no window
            a.sti();
            a.mov(ebx, 2);              // the STI shadow: still no window
            a.mov(ecx, 3);              // the window is before this instruction
            a.hlt();
        });
        m.Cpu.RequestInterruptWindow(true);
        CpuExit exit = RunToExit(m);
        uint movEcx = TestMachine.CodeBase + 7 + 5 + 1 + 5;
        Assert.Multiple(() =>
        {
            Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.InterruptWindow));
            Assert.That(m.Cpu.Eip, Is.EqualTo(movEcx), "EIP is the next instruction: nothing ran after the window opened");
            Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx]), Is.EqualTo((1u, 2u, 0u)));
            Assert.That(m.Cpu.InterruptWindowRequested, Is.False, "the exit consumes the request");
        });
    }

    [Test]
    public void AnInjectedVectorIsDeliveredBeforeTheNextInstructionEvenBelow32()
    {
        TestMachine m = Machine();
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.sti();
            a.nop();
            a.mov(ecx, 3);
            a.hlt();
        });
        m.Cpu.RequestInterruptWindow(true);
        Assert.That(RunToExit(m).Reason, Is.EqualTo(CpuExitReason.InterruptWindow));
        uint windowEip = m.Cpu.Eip;
        m.Cpu.InjectExternalInterrupt(0x08); // the firmware's IRQ 0 vector: an external interrupt, not #DF
        m.RunToHalt();
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(windowEip), "the handler interrupted the instruction at the window");
            Assert.That(m.Cpu[Gpr.Ebp] & 0x200, Is.Zero, "through an interrupt gate: IF clear in the handler");
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(3u));
        });
    }

    [Test]
    public void MovSsAfterStiHoldsTheWindowForOneMoreInstruction()
    {
        TestMachine m = Machine();
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.mov(eax, ss);
            a.sti();
            a.mov(ss, eax);             // in STI's shadow, and starts its own
            a.mov(ebx, 2);              // in MOV SS's shadow: without it the window would open before this
            a.mov(ecx, 3);              // the window is here
            a.hlt();
        });
        m.Cpu.RequestInterruptWindow(true);
        CpuExit exit = RunToExit(m);
        Assert.Multiple(() =>
        {
            Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.InterruptWindow));
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(2u), "the instruction after MOV SS ran inside its shadow");
            Assert.That(m.Cpu[Gpr.Ecx], Is.Zero);
        });
    }

    [Test]
    public void AHaltedCoreWithIfSetWakesForAWindowRequestButNotWithIfClear()
    {
        var core = new TestMachine().Cpu;
        Assert.That(core.HasDeliverableInterrupt, Is.False);
        core.RequestInterruptWindow(true);
        Assert.That(core.HasDeliverableInterrupt, Is.False, "IF=0 at boot: the window cannot open");
        core.Eflags |= 0x200;
        Assert.That(core.HasDeliverableInterrupt, Is.True);
        core.RequestInterruptWindow(false);
        Assert.That(core.HasDeliverableInterrupt, Is.False, "a withdrawn request wakes nothing");
    }

    [Test]
    public void SavedStateCarriesThePendingWindowAndTheInjectedVector()
    {
        TestMachine m = Machine();
        m.Cpu.RequestInterruptWindow(true);
        m.Cpu.InjectExternalInterrupt(0x71);
        CpuState saved = m.Cpu.SaveState();
        var other = new TestMachine().Cpu;
        other.RestoreState(saved);
        Assert.Multiple(() =>
        {
            Assert.That(other.InterruptWindowRequested, Is.True);
            Assert.That((saved.ExternalInterruptInjected, saved.InjectedVector), Is.EqualTo((true, (byte)0x71)));
            Assert.That(other.SaveState(), Is.EqualTo(saved));
        });
    }
}
