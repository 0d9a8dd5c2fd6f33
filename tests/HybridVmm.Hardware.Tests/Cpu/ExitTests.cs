using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>Exits to the hypervisor: port I/O, CPUID, memory intercepts with rollback, #UD, HLT.</summary>
public class ExitTests
{
    [Test]
    public void InStaysPendingUntilCompletedThenStoresValueAndRetires()
    {
        var m = new TestMachine();
        m.Load(asm =>
        {
            asm.mov(eax, 0x11223344);
            asm.@in(al, 0x60);
            asm.mov(dx, 0x1f0);
            asm.@in(eax, dx);
            asm.@in(ax, dx);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Port, exit.Size), Is.EqualTo((CpuExitReason.IoIn, (ushort)0x60, (byte)1)));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + 5), "EIP stays on the IN");
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(1));
        m.Cpu.CompleteIoIn(0xab);
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x112233ab));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(2));

        exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Port, exit.Size), Is.EqualTo((CpuExitReason.IoIn, (ushort)0x1f0, (byte)4)));
        m.Cpu.CompleteIoIn(0xcafebabe);
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0xcafebabe));

        exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Size), Is.EqualTo((CpuExitReason.IoIn, (byte)2)));
        m.Cpu.CompleteIoIn(0x1234);
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0xcafe1234));
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Halt));
    }

    [Test]
    public void OutReportsPortSizeAndValue()
    {
        var m = new TestMachine();
        m.Load(asm =>
        {
            asm.mov(eax, 0x11223344);
            asm.@out(0x80, al);
            asm.mov(dx, 0x3f8);
            asm.@out(dx, ax);
            asm.@out(dx, eax);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.IoOut, Port: 0x80, Size: 1, Value: 0x44)));
        m.Cpu.CompleteIoOut();
        exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.IoOut, Port: 0x3f8, Size: 2, Value: 0x3344)));
        m.Cpu.CompleteIoOut();
        exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.IoOut, Port: 0x3f8, Size: 4, Value: 0x11223344)));
        m.Cpu.CompleteIoOut();
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Halt));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(6));
    }

    [Test]
    public void RepOutsbExitsOncePerElementAndRetiresAfterTheLast()
    {
        var m = new TestMachine();
        m.WriteBytes(TestMachine.DataBase, "abc"u8);
        m.Load(asm =>
        {
            asm.mov(esi, TestMachine.DataBase);
            asm.mov(ecx, 3);
            asm.mov(dx, 0xe9);
            asm.rep.outsb();
            asm.hlt();
        });
        var written = new List<char>();
        CpuExit exit;
        while ((exit = m.Cpu.Run(100)).Reason == CpuExitReason.IoOut)
        {
            Assert.That((exit.Port, exit.Size), Is.EqualTo(((ushort)0xe9, (byte)1)));
            written.Add((char)exit.Value);
            m.Cpu.CompleteIoOut();
        }
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Halt));
        Assert.That(new string(written.ToArray()), Is.EqualTo("abc"));
        Assert.That((m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Esi]), Is.EqualTo((0u, TestMachine.DataBase + 3)));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(5));
    }

    [Test]
    public void RepInsdBackwardsStoresEachCompletedValue()
    {
        var m = new TestMachine();
        m.Load(asm =>
        {
            asm.std();
            asm.mov(edi, TestMachine.DataBase + 8);
            asm.mov(ecx, 3);
            asm.mov(dx, 0x10);
            asm.rep.insd();
            asm.cld();
            asm.hlt();
        });
        uint next = 0xa0;
        CpuExit exit;
        while ((exit = m.Cpu.Run(100)).Reason == CpuExitReason.IoIn)
        {
            Assert.That(exit.Size, Is.EqualTo(4));
            m.Cpu.CompleteIoIn(next++);
        }
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Halt));
        Assert.That(m.Read32(TestMachine.DataBase + 8), Is.EqualTo(0xa0));
        Assert.That(m.Read32(TestMachine.DataBase + 4), Is.EqualTo(0xa1));
        Assert.That(m.Read32(TestMachine.DataBase + 0), Is.EqualTo(0xa2));
        Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(TestMachine.DataBase - 4));
    }

    [Test]
    public void CpuidExitsWithLeafAndCompletionWritesRegisters()
    {
        var m = new TestMachine();
        m.Load(asm =>
        {
            asm.mov(eax, 1);
            asm.xor(ecx, ecx);
            asm.cpuid();
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Cpuid));
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(1));
        m.Cpu.CompleteCpuid(0x11, 0x22, 0x33, 0x44);
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Halt));
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Edx]), Is.EqualTo((0x11u, 0x22u, 0x33u, 0x44u)));
    }

    [Test]
    public void CompletingWithoutPendingInstructionIsAHostBug()
    {
        var m = new TestMachine();
        Assert.Throws<InvalidOperationException>(() => m.Cpu.CompleteIoOut());
    }

    [Test]
    public void ReadOfUnmappedPageInterceptsWithoutArchitecturalEffect()
    {
        var m = new TestMachine();
        m.Slat.Unmap(0x30);
        m.Load(asm =>
        {
            asm.mov(eax, 5);
            asm.push(eax);
            asm.add(eax, __dword_ptr[0x30010]);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: 0x30010, IsWrite: false, Size: 4)));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + 6));
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(5));
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop - 4));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(2));

        m.Slat.Map(0x30, 0x30, writable: true);
        m.Write32(0x30010, 10);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(15));
    }

    [Test]
    public void PopToWriteProtectedPageRollsBackEspAndFlagsAreUntouched()
    {
        var m = new TestMachine();
        m.Slat.SetWritable(0x30, false);
        m.Load(asm =>
        {
            asm.push(0x1234);
            asm.pop(__dword_ptr[0x30000]);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        // A write intercept carries the bytes being written (for a device to complete it, MmioTests.cs).
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: 0x30000, IsWrite: true, Size: 4, Value: 0x1234)));
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop - 4), "POP's ESP increment is rolled back");
        m.Slat.SetWritable(0x30, true);
        m.RunToHalt();
        Assert.That(m.Read32(0x30000), Is.EqualTo(0x1234));
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
    }

    [Test]
    public void WriteCrossingIntoUnmappedPageTouchesNeitherPage()
    {
        var m = new TestMachine();
        m.Slat.Unmap(0x30);
        m.Load(asm =>
        {
            asm.mov(eax, 0xdeadbeef);
            asm.mov(__dword_ptr[0x2fffe], eax);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.MemoryIntercept));
        Assert.That((exit.GuestPhysicalAddress, exit.IsWrite), Is.EqualTo((0x30000u, true)));
        Assert.That(m.Read8(0x2fffe), Is.EqualTo(0));
        Assert.That(m.Read8(0x2ffff), Is.EqualTo(0));
    }

    [Test]
    public void AccessesCrossingAPageBoundaryTranslateEachPage()
    {
        var m = new TestMachine();
        // Guest page 0x31 is backed by host frame 0x40, so a straddling access must split.
        m.Slat.Map(0x31, 0x40, writable: true);
        m.Load(asm =>
        {
            asm.mov(__dword_ptr[0x30ffe], 0x44332211);
            asm.mov(ebx, __dword_ptr[0x30ffe]);
            asm.hlt();
        });
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x44332211));
        Assert.That(m.Read8(0x30fff), Is.EqualTo(0x22));
        Assert.That(m.Read8(0x40000), Is.EqualTo(0x33));
        Assert.That(m.Read8(0x31000), Is.EqualTo(0x00));
    }

    [Test]
    public void FetchFromUnmappedPageIntercepts()
    {
        var m = new TestMachine();
        m.Slat.Unmap(0x50);
        m.Load(asm => asm.jmp(0x50000));
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.MemoryIntercept, GuestPhysicalAddress: 0x50000, IsWrite: false, Size: 1)));
        Assert.That(m.Cpu.Eip, Is.EqualTo(0x50000));
    }

    [TestCase(new byte[] { 0x0f, 0x0b }, "ud2")]
    [TestCase(new byte[] { 0x0f, 0x28, 0xc1 }, "movaps xmm0,xmm1")]
    [TestCase(new byte[] { 0xdf, 0x08 }, "fisttp")] // SSE3 is not reported by CPUID
    [TestCase(new byte[] { 0x0f, 0x05 }, "syscall")]
    public void UndefinedOrUnemulatedInstructionRaisesInvalidOpcode(byte[] code, string disassembly)
    {
        var m = new TestMachine();
        m.WriteBytes(TestMachine.CodeBase, code);
        m.Cpu.Eip = TestMachine.CodeBase;
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.InvalidOpcode)));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase));
        string state = m.Cpu.DescribeState();
        Assert.That(state, Does.Contain(disassembly).And.Contain("EAX=").And.Contain("EFLAGS="));
        TestContext.Out.WriteLine(state);
    }

    [Test]
    public void HltExitLeavesEipAfterTheInstruction()
    {
        var m = new TestMachine();
        m.Load(asm => { asm.hlt(); asm.inc(eax); asm.hlt(); });
        Assert.That(m.Cpu.Run(10).Reason, Is.EqualTo(CpuExitReason.Halt));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + 1));
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(1));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(3));
    }

    /// <summary>
    /// The hypervisor's CR0 and CR4 masks (as VMX's guest/host masks): a MOV or LMSW that changes a masked bit retires,
    /// then exits with the register, its new value and its old one; one that changes only unmasked bits does not exit.
    /// </summary>
    [Test]
    public void AWriteThatChangesAMaskedControlRegisterBitRetiresThenExits()
    {
        var m = new TestMachine();
        m.Cpu.Cr0InterceptMask = (uint)(Cr0Flags.WP | Cr0Flags.PE);
        m.Cpu.Cr4InterceptMask = (uint)Cr4Flags.PGE;
        uint before = m.Cpu.Cr0;
        byte[] code = m.Load(asm =>
        {
            asm.mov(eax, cr0);
            asm.or(eax, (int)Cr0Flags.TS); asm.mov(cr0, eax);        // TS: the guest's own bit, no exit
            asm.or(eax, (int)Cr0Flags.WP); asm.mov(cr0, eax);        // WP: exit
            asm.mov(ecx, (int)Cr4Flags.PSE); asm.mov(cr4, ecx);      // PSE: not masked here
            asm.or(ecx, (int)Cr4Flags.PGE); asm.mov(cr4, ecx);       // PGE: exit
            asm.mov(ecx, (int)Cr4Flags.PGE); asm.mov(cr4, ecx);      // PSE cleared, PGE unchanged: no exit
            asm.mov(eax, cr0); asm.lmsw(ax);                         // PE unchanged: no exit
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.ControlRegisterWrite, Value: before | (uint)(Cr0Flags.TS | Cr0Flags.WP), Vector: 0, ErrorCode: before | (uint)Cr0Flags.TS)));
        Assert.That((m.Cpu.Cr0 & (uint)Cr0Flags.WP, m.Cpu.InstructionsRetired), Is.EqualTo(((uint)Cr0Flags.WP, 5L)), "the write retired before its exit");
        exit = m.Cpu.Run(100);
        Assert.That(exit, Is.EqualTo(new CpuExit(CpuExitReason.ControlRegisterWrite, Value: (uint)(Cr4Flags.PSE | Cr4Flags.PGE), Vector: 4, ErrorCode: (uint)Cr4Flags.PSE)));
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Halt));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase + (uint)code.Length));
    }

    /// <summary>A single-step trap follows a control register write that exits, as it follows any instruction (SDM Vol. 3A, 17.3.1.4).</summary>
    [Test]
    public void ASingleStepTrapFollowsAControlRegisterWriteThatExits()
    {
        const uint Idt = 0x30000, IdtDescriptor = 0x2F000, Handler = 0x5000;
        var m = new TestMachine();
        m.Cpu.Cr0InterceptMask = (uint)Cr0Flags.WP;
        m.WriteBytes(IdtDescriptor, BitConverter.GetBytes((ushort)(256 * 8 - 1)));
        m.Write32(IdtDescriptor + 2, Idt);
        m.Write32(Idt + 8, (Handler & 0xffff) | (0x08u << 16));      // vector 1: interrupt gate
        m.Write32(Idt + 12, (Handler & 0xffff0000) | 0x8E00);
        m.Load(a => { a.mov(ebx, __dword_ptr[esp]); a.mov(esi, dr6); a.hlt(); }, Handler);
        byte[] code = m.Load(asm =>
        {
            asm.lidt(__[IdtDescriptor]);
            asm.mov(eax, cr0); asm.or(eax, (int)Cr0Flags.WP);
            asm.pushfd(); asm.or(__dword_ptr[esp], 0x100); asm.popfd();
            asm.mov(cr0, eax);
            asm.nop();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.ControlRegisterWrite));
        Assert.That(m.Cpu.Eip, Is.EqualTo(Handler), "the #DB handler is entered before the exit is returned");
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(TestMachine.CodeBase + (uint)code.Length - 1), "the trap's EIP is after the MOV to CR0");
        Assert.That(m.Cpu[Gpr.Esi] & 0x4000, Is.Not.Zero, "DR6.BS");
    }
}
