using HybridVmm.Hardware.Cpu;
using HybridVmm.Testing;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// SMEP and SMAP (Intel SDM Vol. 3A, 4.6): with CR4.SMEP a supervisor fetch from a page user mode can reach is a #PF
/// whose error code has I/D; with CR4.SMAP a supervisor data access to such a page is a #PF unless EFLAGS.AC=1, which
/// STAC and CLAC set and clear. The rule must hold on a TLB hit as on a walk. kvm-unit-tests' `smap` checks the same
/// against a real implementation end to end (docs/conformance.md).
/// </summary>
public class SupervisorProtectionTests
{
    private const uint PageDirectory = 0x70000, LowTable = 0x71000, WindowTable = 0x72000, Window = 0x4000_0000;
    private const uint P = 1, RW = 2, US = 4;
    private const uint Smep = (uint)Cr4Flags.SMEP, Smap = (uint)Cr4Flags.SMAP;

    /// <summary>The low 1 MiB identity-mapped for the supervisor; window page 4 is a user page over DataBase.</summary>
    private static TestMachine Machine()
    {
        var m = new TestMachine();
        for (uint page = 0; page < TestMachine.Pages; page++)
        {
            m.Write32(LowTable + page * 4, (page << 12) | P | RW);
        }
        m.Write32(PageDirectory, LowTable | P | RW);
        m.Write32(PageDirectory + (Window >> 22) * 4, WindowTable | P | RW | US);
        m.Write32(WindowTable + 4 * 4, TestMachine.DataBase | P | RW | US);
        m.Cpu.Cr3 = PageDirectory;
        return m;
    }

    private static void EnablePaging(Assembler a, uint cr4Bits)
    {
        a.mov(eax, cr4Bits);
        a.mov(cr4, eax);
        a.mov(eax, 0x8001_0011); // PE, ET, WP, PG
        a.mov(cr0, eax);
    }

    [Test]
    public void UnderSmapASupervisorReadOfAUserPageFaultsUnlessAcIsSetAndTheTlbDoesNotHideIt()
    {
        var m = Machine();
        m.Write32(TestMachine.DataBase + 8, 0xCAFE_F00D);
        m.Load(a =>
        {
            EnablePaging(a, Smap);
            a.stac();
            a.mov(ebx, __dword_ptr[Window + 0x4008]); // allowed with AC=1, and now in the TLB
            a.clac();
            a.mov(ecx, __dword_ptr[Window + 0x4008]); // a TLB hit: SMAP must still refuse it
            a.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0xCAFE_F00Du), "EFLAGS.AC=1 lifts SMAP");
            Assert.That((exit.Reason, exit.Vector, exit.ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.PageFault, 1u)),
                "present, read, supervisor: error code 1 (SDM 4.7)");
            Assert.That(m.Cpu.Cr2, Is.EqualTo(Window + 0x4008));
            Assert.That(m.Cpu[Gpr.Ecx], Is.Zero, "the read did not happen");
        });
    }

    [Test]
    public void UnderSmapASupervisorWriteToAUserPageFaultsWithTheWriteBit()
    {
        var m = Machine();
        m.Load(a => { EnablePaging(a, Smap); a.mov(__dword_ptr[Window + 0x4010], 0x1234); a.hlt(); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode, m.Read32(TestMachine.DataBase + 0x10)), Is.EqualTo((ExceptionVector.PageFault, 3u, 0u)));
    }

    [Test]
    public void WithoutSmapTheSameAccessesSucceed()
    {
        var m = Machine();
        m.Write32(TestMachine.DataBase + 8, 0x600D);
        m.Execute(a =>
        {
            EnablePaging(a, 0);
            a.mov(ebx, __dword_ptr[Window + 0x4008]);
            a.mov(__dword_ptr[Window + 0x4010], 0x77);
        });
        Assert.That((m.Cpu[Gpr.Ebx], m.Read32(TestMachine.DataBase + 0x10)), Is.EqualTo((0x600Du, 0x77u)));
    }

    [Test]
    public void UnderSmepASupervisorFetchFromAUserPageFaultsWithTheFetchBit()
    {
        var m = Machine();
        m.Write32(TestMachine.DataBase, 0xF4); // HLT, reached through the user page
        m.Load(a => { EnablePaging(a, Smep); a.mov(eax, Window + 0x4000); a.jmp(eax); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.Multiple(() =>
        {
            Assert.That((exit.Reason, exit.Vector, exit.ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.PageFault, 0x11u)),
                "present, read, supervisor, instruction fetch (SDM 4.7: I/D is reported while CR4.SMEP=1)");
            Assert.That(m.Cpu.Cr2, Is.EqualTo(Window + 0x4000));
        });

        var plain = Machine();
        plain.Write32(TestMachine.DataBase, 0xF4);
        plain.Load(a => { EnablePaging(a, 0); a.mov(eax, Window + 0x4000); a.jmp(eax); });
        Assert.That(plain.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.Halt), "without SMEP the supervisor runs the user page's code");
    }

    [Test]
    public void UnderSmepAFetchFromANotPresentPageAlsoHasTheFetchBit()
    {
        var m = Machine();
        m.Load(a => { EnablePaging(a, Smep); a.mov(eax, Window + 0x9000); a.jmp(eax); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((ExceptionVector.PageFault, 0x10u)));
    }

    [Test]
    public void SmapDoesNotStopASupervisorFetchNorSmepADataRead()
    {
        var m = Machine();
        m.Write32(TestMachine.DataBase, 0xF4);
        m.Write32(TestMachine.DataBase + 8, 0x5EED);
        m.Load(a =>
        {
            EnablePaging(a, Smep);
            a.mov(ebx, __dword_ptr[Window + 0x4008]);
            a.mov(eax, Smap);
            a.mov(cr4, eax);
            a.mov(eax, Window + 0x4000);
            a.jmp(eax);
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, m.Cpu[Gpr.Ebx]), Is.EqualTo((CpuExitReason.Halt, 0x5EEDu)));
    }
}
