using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>Protected-mode interrupt and exception delivery through the IDT (SDM Vol. 3A, chapter 6).</summary>
public class InterruptTests
{
    private const uint Idt = 0x30000;
    private const uint IdtDescriptor = 0x2F000;
    private const uint Handler = 0x5000;
    private const uint Handler2 = 0x6000;

    private static void SetGate(TestMachine m, int vector, uint handler, bool trap = false, bool present = true, ushort selector = 0x08)
    {
        uint low = (handler & 0xffff) | ((uint)selector << 16);
        uint high = (handler & 0xffff0000) | (present ? 0x8000u : 0) | ((trap ? 0xFu : 0xEu) << 8);
        m.Write32(Idt + (uint)vector * 8, low);
        m.Write32(Idt + (uint)vector * 8 + 4, high);
    }

    private static void LoadIdtDescriptor(TestMachine m, ushort limit = 256 * 8 - 1)
    {
        m.WriteBytes(IdtDescriptor, BitConverter.GetBytes(limit));
        m.Write32(IdtDescriptor + 2, Idt);
    }

    [Test]
    public void DivideErrorIsDeliveredThroughAnInterruptGateWithEipOnTheFaultingInstruction()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, ExceptionVector.DivideError, Handler);
        m.Load(a =>
        {
            a.mov(ebx, __dword_ptr[esp]);       // the pushed EIP
            a.pushfd(); a.pop(edi);             // EFLAGS inside the handler
            a.add(__dword_ptr[esp], 2);         // skip the 2-byte DIV
            a.iretd();
        }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.sti();
            a.xor(ecx, ecx);
            a.mov(eax, 10);
            a.div(ecx);
            a.mov(esi, 0x77);
            a.pushfd(); a.pop(ebp);
            a.hlt();
        });
        m.RunToHalt();
        uint div = TestMachine.CodeBase + 7 + 1 + 2 + 5;
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(div), "a fault pushes the address of the faulting instruction");
            Assert.That(m.Cpu[Gpr.Edi] & 0x200, Is.Zero, "an interrupt gate clears IF");
            Assert.That(m.Cpu[Gpr.Ebp] & 0x200, Is.EqualTo(0x200u), "IRET restores IF");
            Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(0x77u));
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
        });
    }

    [Test]
    public void AnAbsentGateRaisesGeneralProtectionWithTheGateInTheErrorCode()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, ExceptionVector.GeneralProtection, Handler, trap: true);
        m.Load(a =>
        {
            a.pop(edx);                          // error code
            a.add(__dword_ptr[esp], 2);         // skip INT 0x40
            a.iretd();
        }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.@int(0x40);
            a.hlt();
        });
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo((0x40u << 3) | 2), "IDT bit set, index 0x40 (SDM Vol. 3A, 6.13)");
    }

    [Test]
    public void SoftwareInterruptPushesTheNextInstructionThroughATrapGate()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, 0x80, Handler, trap: true);
        m.Load(a => { a.mov(ebx, __dword_ptr[esp]); a.mov(ecx, 0x1234); a.iretd(); }, Handler);
        m.Load(a => { a.lidt(__[IdtDescriptor]); a.@int(0x80); a.hlt(); });
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(TestMachine.CodeBase + 7 + 2));
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(0x1234u));
    }

    [Test]
    public void AnExternalInterruptWaitsForIfAndTheOneInstructionStiShadow()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, 0x30, Handler);
        m.Load(a => { a.mov(ebx, eax); a.iretd(); }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.mov(eax, 0);
            a.sti();
            a.mov(eax, 1);   // runs in the STI shadow
            a.mov(eax, 2);
            a.hlt();
        });
        m.Cpu.RequestInterrupt(0x30);
        m.Cpu[Gpr.Ebx] = 0xFFFF;
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(1u), "taken after exactly one instruction following STI");
    }

    [Test]
    public void HltWakesOnAnInterruptAndResumesAfterTheHlt()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, 0x31, Handler);
        SetGate(m, 0x32, Handler2);
        m.Load(a => { a.inc(ecx); a.iretd(); }, Handler);
        m.Load(a => { a.add(ecx, 0x100); a.iretd(); }, Handler2);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.xor(ecx, ecx);
            a.sti();
            a.hlt();
            a.mov(esi, 5);
            a.hlt();
        });
        m.RunToHalt();
        Assert.That(m.Cpu.HasDeliverableInterrupt, Is.False);
        m.Cpu.RequestInterrupt(0x31);
        m.Cpu.RequestInterrupt(0x32);
        Assert.That(m.Cpu.HasDeliverableInterrupt, Is.True);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(5u));
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(0x101u), "both vectors delivered, the higher first");
    }

    [Test]
    public void CliHoldsInterruptsPendingUntilIfIsSetAgain()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, 0x40, Handler);
        m.Load(a => { a.mov(ebx, esi); a.iretd(); }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.cli();
            a.mov(esi, 1);
            a.mov(esi, 2);
            a.push(0x202); a.popfd();           // IF=1 through POPF: no shadow
            a.mov(esi, 3);
            a.hlt();
        });
        m.Cpu.RequestInterrupt(0x40);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(2u));
    }

    [Test]
    public void AFaultWithNoUsableGateNorDoubleFaultHandlerTripleFaults()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);   // every gate absent
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.xor(ecx, ecx);
            a.div(ecx);
            a.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.TripleFault, ExceptionVector.DivideError)));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + 7 + 2), "EIP stays on the faulting DIV");
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop), "nothing was pushed");
    }

    [Test]
    public void AnUndeliverableFaultWithADoubleFaultHandlerRaisesDoubleFaultWithErrorCodeZero()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, ExceptionVector.DoubleFault, Handler);
        m.Load(a => { a.pop(edx); a.mov(esi, 0xDF); a.hlt(); }, Handler);
        m.Load(a => { a.lidt(__[IdtDescriptor]); a.xor(ecx, ecx); a.mov(edx, 7); a.div(ecx); a.hlt(); });
        m.RunToHalt();
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edx]), Is.EqualTo((0xDFu, 0u)));
    }

    /// <summary>
    /// INT n through a gate that is not present is #NP with the IDT error code (vector × 8 + 2), raised by the INT
    /// instruction itself: the #NP handler sees EIP on the INT (SDM Vol. 2A, INT n; kvm-unit-tests' eventinj).
    /// </summary>
    [Test]
    public void IntThroughANotPresentGateIsSegmentNotPresentOnTheIntInstruction()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, 0x40, Handler2, present: false);
        SetGate(m, ExceptionVector.SegmentNotPresent, Handler);
        m.Load(a => { a.pop(edx); a.pop(edi); a.mov(esi, 0x0B); a.hlt(); }, Handler);
        m.Load(a => { a.lidt(__[IdtDescriptor]); a.nop(); a.@int(0x40); a.hlt(); });
        const uint intAddress = TestMachine.CodeBase + 7 + 1; // lidt [disp32] is 7 bytes, nop 1
        m.RunToHalt();
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edx], m.Cpu[Gpr.Edi]), Is.EqualTo((0x0Bu, 0x40u * 8 + 2, intAddress)));
    }

    /// <summary>SDM Vol. 3A, table 6-5: a contributory fault (#NP) while delivering a benign exception (#UD) is delivered as itself.</summary>
    [Test]
    public void AFaultWhileDeliveringABenignExceptionIsDeliveredAsItself()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, ExceptionVector.InvalidOpcode, Handler2, present: false);
        SetGate(m, ExceptionVector.SegmentNotPresent, Handler);
        SetGate(m, ExceptionVector.DoubleFault, Handler2);
        m.Load(a => { a.pop(edx); a.mov(esi, 0x0B); a.hlt(); }, Handler);
        m.Load(a => { a.mov(esi, 0xDF); a.hlt(); }, Handler2);
        m.Load(a => { a.lidt(__[IdtDescriptor]); a.ud2(); a.hlt(); });
        m.RunToHalt();
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edx]), Is.EqualTo((0x0Bu, (uint)ExceptionVector.InvalidOpcode * 8 + 2)));
    }

    /// <summary>SDM Vol. 3A, table 6-5: a contributory fault (#NP) while delivering a contributory one (#DE) is a double fault.</summary>
    [Test]
    public void AContributoryFaultWhileDeliveringAContributoryOneIsADoubleFault()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, ExceptionVector.DivideError, Handler2, present: false);
        SetGate(m, ExceptionVector.SegmentNotPresent, Handler2);
        SetGate(m, ExceptionVector.DoubleFault, Handler);
        m.Load(a => { a.pop(edx); a.mov(esi, 0xDF); a.hlt(); }, Handler);
        m.Load(a => { a.mov(esi, 0x0B); a.hlt(); }, Handler2);
        m.Load(a => { a.lidt(__[IdtDescriptor]); a.xor(ecx, ecx); a.div(ecx); a.hlt(); });
        m.RunToHalt();
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edx]), Is.EqualTo((0xDFu, 0u)));
    }

    [Test]
    public void AGateOutsideTheIdtLimitOrWithANullSelectorIsUnusable()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m, limit: 8 * 8 - 1);     // vectors 0-7 only
        SetGate(m, ExceptionVector.DivideError, Handler, selector: 0);
        SetGate(m, 0x30, Handler);
        m.Load(a => { a.lidt(__[IdtDescriptor]); a.xor(ecx, ecx); a.div(ecx); a.hlt(); });
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.TripleFault));

        var n = new TestMachine();
        LoadIdtDescriptor(n, limit: 8 * 8 - 1);
        n.Load(a => { a.lidt(__[IdtDescriptor]); a.sti(); a.nop(); a.nop(); a.hlt(); });
        n.Cpu.RequestInterrupt(0x30);
        CpuExit exit = n.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.TripleFault, (byte)0x30)));
    }

    [Test]
    public void RdmsrWrmsrAndVmcallExitAndAreCompletedByTheHypervisor()
    {
        var m = new TestMachine();
        m.Load(a =>
        {
            a.mov(ecx, 0x40000000); a.mov(eax, 0x11); a.mov(edx, 0x22);
            a.wrmsr();
            a.rdmsr();
            a.vmcall();
            a.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Value), Is.EqualTo((CpuExitReason.Wrmsr, 0x40000000u)));
        m.Cpu.CompleteWrmsr();
        exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Rdmsr));
        m.Cpu.CompleteRdmsr(0x0000_0022_0000_0011);
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Edx]), Is.EqualTo((0x11u, 0x22u)));
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Vmcall));
        m.Cpu.CompleteHypercall();
        m.RunToHalt();
    }

    [Test]
    public void AnInjectedGeneralProtectionIsDeliveredOnTheMsrInstruction()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, ExceptionVector.GeneralProtection, Handler);
        m.Load(a => { a.pop(edx); a.mov(ebx, __dword_ptr[esp]); a.add(__dword_ptr[esp], 2); a.iretd(); }, Handler);
        m.Load(a => { a.lidt(__[IdtDescriptor]); a.mov(ecx, 0x12345); a.rdmsr(); a.hlt(); });
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Rdmsr));
        m.Cpu.InjectException(ExceptionVector.GeneralProtection, 0);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(TestMachine.CodeBase + 7 + 5));
    }

    [Test]
    public void WithoutAnIdtAnExceptionStillStopsWithAnExceptionExit()
    {
        var m = new TestMachine();
        m.Load(a => { a.xor(ecx, ecx); a.div(ecx); a.hlt(); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.DivideError)));
    }

    // The stack page the handlers push onto is write-protected in the second-level table, as dirty logging and
    // copy-on-write leave it: the delivery exits to the hypervisor, and the same event is delivered once it resumes.
    private const int StackPage = (int)((TestMachine.StackTop - 4) >> 12);

    [Test]
    public void AnExternalInterruptWhoseStackPushTheSecondLevelTableRefusesIsDeliveredAfterTheExit()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, 0x30, Handler);
        m.Load(a => { a.inc(ecx); a.mov(ebx, __dword_ptr[esp]); a.iretd(); }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.xor(ecx, ecx);
            a.sti();
            a.nop();
            a.mov(eax, 1);
            a.hlt();
        });
        m.Cpu.Run(3); // LIDT, XOR, STI: the interrupt is taken after the NOP in STI's shadow
        m.Slat.SetWritable(StackPage, false);
        m.Cpu.RequestInterrupt(0x30);
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.IsWrite, exit.GuestPhysicalAddress >> 12), Is.EqualTo((CpuExitReason.MemoryIntercept, true, (uint)StackPage)));
        Assert.That(m.Cpu[Gpr.Ecx], Is.Zero, "the handler has not run");
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop), "nothing was pushed");
        Assert.That(m.Cpu.HasPendingInterrupt, Is.False, "the vector is held for re-injection, not left requested");

        m.Slat.SetWritable(StackPage, true);
        m.RunToHalt();
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(1u), "delivered exactly once");
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(TestMachine.CodeBase + 7 + 2 + 1 + 1), "the return address is the instruction after the NOP");
            Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(1u));
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
        });
    }

    [Test]
    public void AnExceptionWhoseStackPushTheSecondLevelTableRefusesIsDeliveredAfterTheExit()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, ExceptionVector.DivideError, Handler);
        m.Load(a => { a.inc(esi); a.mov(ebx, __dword_ptr[esp]); a.add(__dword_ptr[esp], 2); a.iretd(); }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.xor(ecx, ecx);
            a.div(ecx);
            a.hlt();
        });
        m.Cpu.Run(2);
        m.Slat.SetWritable(StackPage, false);
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.IsWrite, exit.GuestPhysicalAddress >> 12), Is.EqualTo((CpuExitReason.MemoryIntercept, true, (uint)StackPage)));
        Assert.That(m.Cpu[Gpr.Esi], Is.Zero, "no #DF, no handler yet");

        m.Slat.SetWritable(StackPage, true);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(1u), "#DE delivered exactly once");
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(TestMachine.CodeBase + 7 + 2), "with EIP on the DIV");
    }

    [Test]
    public void AnIntInstructionWhoseStackPushTheSecondLevelTableRefusesRunsAgainAfterTheExit()
    {
        var m = new TestMachine();
        LoadIdtDescriptor(m);
        SetGate(m, 0x40, Handler);
        m.Load(a => { a.inc(esi); a.iretd(); }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.@int(0x40);
            a.hlt();
        });
        m.Cpu.Run(1);
        m.Slat.SetWritable(StackPage, false);
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.MemoryIntercept));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + 7), "INT stays the next instruction");

        m.Slat.SetWritable(StackPage, true);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(1u));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(5), "LIDT, INT, INC, IRETD, HLT: INT retired once");
    }
}

public class InterruptDuringHandlerTests
{
    [Test]
    public void AnInterruptRaisedInsideAHandlerIsTakenAfterIret()
    {
        var m = new TestMachine();
        m.WriteBytes(0x2F000, BitConverter.GetBytes((ushort)(256 * 8 - 1)));
        m.Write32(0x2F002, 0x30000);
        m.Write32(0x30000 + 0x40 * 8, 0x5000 | (0x08u << 16));
        m.Write32(0x30000 + 0x40 * 8 + 4, 0x8E00);
        m.Load(a => { a.pushad(); a.inc(__dword_ptr[0x7000]); a.mov(ecx, 0x40000084); a.wrmsr(); a.popad(); a.iretd(); }, 0x5000);
        m.Load(a => { a.lidt(__[0x2F000]); a.sti(); a.hlt(); a.mov(esi, 1); a.hlt(); });
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Halt));
        m.Cpu.RequestInterrupt(0x40);
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Wrmsr));
        m.Cpu.RequestInterrupt(0x40);
        m.Cpu.CompleteWrmsr();
        exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Wrmsr), m.Cpu.DescribeState());
        m.Cpu.CompleteWrmsr();
        m.RunToHalt();
        Assert.That((m.Read32(0x7000), m.Cpu[Gpr.Esi], m.Cpu[Gpr.Esp]), Is.EqualTo((2u, 1u, TestMachine.StackTop)));
    }
}
