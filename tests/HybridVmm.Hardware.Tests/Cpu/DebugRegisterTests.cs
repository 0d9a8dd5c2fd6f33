using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.SavedState;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// The debug registers (SDM Vol. 3B, 17.2, and Vol. 2B, MOV DR): reset values, the fixed bits of DR6 and DR7, DR4/DR5
/// aliasing DR6/DR7 with CR4.DE clear, general detect, and their place in the saved state. The sample guest
/// <c>rings</c> checks the same values against QEMU.
/// </summary>
public class DebugRegisterTests
{
    private const uint Idt = 0x30000, IdtDescriptor = 0x2F000, Handler = 0x5000;

    /// <summary>A machine whose IDT sends #DB (vector 1) through an interrupt gate to <see cref="Handler"/>.</summary>
    private static TestMachine WithDebugExceptionHandler()
    {
        var m = new TestMachine();
        m.WriteBytes(IdtDescriptor, BitConverter.GetBytes((ushort)(256 * 8 - 1)));
        m.Write32(IdtDescriptor + 2, Idt);
        m.Write32(Idt + 8, (Handler & 0xFFFF) | (0x08u << 16));
        m.Write32(Idt + 12, (Handler & 0xFFFF0000) | 0x8E00);
        return m;
    }

    [Test]
    public void ReservedBitsReadAsTheSdmFixesThemAndDr4Dr5AliasDr6Dr7()
    {
        var m = new TestMachine();
        m.Execute(a =>
        {
            a.mov(eax, dr6); a.mov(__dword_ptr[0x20000], eax);
            a.mov(eax, dr7); a.mov(__dword_ptr[0x20004], eax);
            a.mov(eax, 0xFFFFFFFF); a.mov(dr6, eax);                 // every bit: only B0-B3, BD, BS, BT take
            a.mov(eax, unchecked((int)0xFFFFDFFF)); a.mov(dr7, eax); // every bit but GD: reserved 11, 12, 14, 15 stay 0
            a.mov(eax, 0x11223344); a.mov(dr2, eax);
            a.mov(eax, dr4); a.mov(__dword_ptr[0x20008], eax);
            a.mov(eax, dr5); a.mov(__dword_ptr[0x2000C], eax);
            a.mov(eax, dr2); a.mov(__dword_ptr[0x20010], eax);
        });
        Assert.Multiple(() =>
        {
            Assert.That(m.Read32(0x20000), Is.EqualTo(0xFFFF0FF0u), "DR6 at reset");
            Assert.That(m.Read32(0x20004), Is.EqualTo(0x00000400u), "DR7 at reset");
            Assert.That(m.Read32(0x20008), Is.EqualTo(0xFFFFEFFFu), "DR6 (read as DR4): bit 12 stays 0");
            Assert.That(m.Read32(0x2000C), Is.EqualTo(0xFFFF07FFu), "DR7 (read as DR5): bits 11, 12, 14, 15 stay 0, bit 10 is 1");
            Assert.That(m.Read32(0x20010), Is.EqualTo(0x11223344u), "DR0-DR3 hold any address");
        });
    }

    [Test]
    public void WithGeneralDetectSetTheNextMovDrIsADebugFaultThatSetsBdAndClearsGd()
    {
        TestMachine m = WithDebugExceptionHandler();
        m.Load(a =>
        {
            a.mov(ebx, __dword_ptr[esp]);     // the pushed EIP: a fault points at the MOV DR
            a.mov(eax, dr6); a.mov(esi, eax); // the handler may use the debug registers: GD is clear now
            a.mov(eax, dr7); a.mov(edi, eax);
            a.hlt();
        }, Handler);
        byte[] code = m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.mov(eax, 0x2400); a.mov(dr7, eax); // GD and the fixed bit
            a.mov(eax, dr0);                     // faults
            a.hlt();
        });
        m.RunToHalt();
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(TestMachine.CodeBase + (uint)code.Length - 4), "EIP of the faulting MOV (3 bytes) before HLT");
            Assert.That(m.Cpu[Gpr.Esi] & 0x2000, Is.EqualTo(0x2000u), "DR6.BD");
            Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(0x400u), "DR7.GD cleared on entry");
        });
    }

    [Test]
    public void AnInstructionBreakpointIsADebugFaultBeforeTheInstructionAndRfLetsItRunOnReturn()
    {
        // SDM Vol. 3B, 17.3.1.1: DR0 enabled with R/W 00 faults before the instruction at its linear address runs, with
        // EIP on it and DR6.B0 set; the handler sets RF in the pushed EFLAGS so that IRET lets the instruction run.
        TestMachine m = WithDebugExceptionHandler();
        m.Load(a =>
        {
            a.inc(ecx);
            a.mov(ebx, __dword_ptr[esp]);                    // the pushed EIP
            a.mov(eax, dr6); a.mov(esi, eax);
            a.or(__dword_ptr[esp + 8], 0x10000);             // RF in the pushed EFLAGS
            a.iretd();
        }, Handler);
        const uint target = 0x6000;
        m.Load(a => { a.add(edx, 1); a.ret(); }, target);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.mov(eax, target); a.mov(dr0, eax);
            a.mov(eax, 0x1); a.mov(dr7, eax);                 // L0, R/W 00 (execute), LEN 00
            a.call(target);
            a.call(target);
            a.mov(eax, 0x0); a.mov(dr7, eax);
            a.call(target);                                    // disarmed: no fault
            a.hlt();
        });
        m.RunToHalt();
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(2u), "one #DB per call while armed");
            Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(3u), "the instruction ran every time, once after each #DB");
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(target), "a fault: the pushed EIP is the breakpoint's instruction");
            Assert.That(m.Cpu[Gpr.Esi] & 0xF, Is.EqualTo(1u), "DR6.B0");
        });
    }

    [Test]
    public void SingleStepSetsDr6Bs()
    {
        TestMachine m = WithDebugExceptionHandler();
        m.Load(a => { a.mov(eax, dr6); a.mov(esi, eax); a.hlt(); }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            a.pushfd(); a.or(__dword_ptr[esp], 0x100); a.popfd();
            a.nop();
            a.hlt();
        });
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(0xFFFF4FF0u), "DR6.BS (bit 14) over the reset value");
    }

    [Test]
    public void TheDebugRegistersSurviveASaveAndAVersion2StateRestoresThemAsAtReset()
    {
        var m = new TestMachine();
        m.Execute(a => { a.mov(eax, 0xABCD0000); a.mov(dr1, eax); a.mov(eax, 0x00030402); a.mov(dr7, eax); });
        CpuState saved = m.Cpu.SaveState();
        using var stream = new MemoryStream();
        CpuStateCodec.Instance.Write(new SavedStateWriter(stream), saved);
        byte[] bytes = stream.ToArray();
        CpuState read = CpuStateCodec.Instance.Read(new SavedStateReader(bytes), CpuStateCodec.Instance.Version);
        var other = new TestMachine();
        other.Cpu.RestoreState(read);
        other.Execute(a => { a.mov(eax, dr1); a.mov(ebx, dr7); });
        Assert.Multiple(() =>
        {
            Assert.That(other.Cpu[Gpr.Eax], Is.EqualTo(0xABCD0000u));
            Assert.That(other.Cpu[Gpr.Ebx], Is.EqualTo(0x00030402u | 0x400u));
        });

        // The same bytes without the debug registers (24 bytes) and the x87 state (100) are a version 2 chunk: the
        // debug registers read as at reset.
        byte[] v2 = bytes[..^(24 + 100)];
        CpuState old = CpuStateCodec.Instance.Read(new SavedStateReader(v2), 2);
        Assert.That((old.Dr1, old.Dr6, old.Dr7), Is.EqualTo((0u, 0xFFFF0FF0u, 0x400u)));
    }
}
