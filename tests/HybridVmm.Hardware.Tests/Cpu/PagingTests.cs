using HybridVmm.Hardware.Cpu;
using HybridVmm.Testing;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// 32-bit paging (Intel SDM Vol. 3A, chapter 4) on a bare core: translation, access rights, A/D bits, #PF with CR2
/// and its error code, the TLB (INVLPG, CR3 reloads, global pages), and the two-dimensional walk through the
/// second-level table. The same behaviour is checked against QEMU by the `paging` sample guest (end-to-end tests).
/// </summary>
public class PagingTests
{
    private const uint PageDirectory = 0x70000;
    private const uint LowTable = 0x71000;      // identity-maps the first 1 MiB (code, data, stack)
    private const uint WindowTable = 0x72000;   // maps the linear window at 0x40000000
    private const uint Window = 0x4000_0000;
    private const uint Idt = 0x30000;
    private const uint IdtDescriptor = 0x2F000;
    private const uint Handler = 0x5000;

    private const uint P = 1, RW = 2, US = 4, A = 0x20, D = 0x40, PS = 0x80, G = 0x100;

    /// <summary>Page tables in guest memory: the low 1 MiB identity-mapped (supervisor, writable), the window empty.</summary>
    private static TestMachine PagedMachine(Func<uint, bool>? isWritablePage = null)
    {
        var m = new TestMachine(isWritablePage);
        for (uint page = 0; page < TestMachine.Pages; page++)
        {
            m.Write32(LowTable + page * 4, (page << 12) | P | RW);
        }
        m.Write32(PageDirectory, LowTable | P | RW);
        m.Write32(PageDirectory + (Window >> 22) * 4, WindowTable | P | RW | US);
        m.Cpu.Cr3 = PageDirectory;
        return m;
    }

    private static void MapWindowPage(TestMachine m, int index, uint physical, uint flags) =>
        m.Write32(WindowTable + (uint)index * 4, physical | flags);

    private static void EnablePaging(Assembler a, uint cr0Extra = 0)
    {
        a.mov(eax, 0x8000_0011 | cr0Extra);
        a.mov(cr0, eax);
    }

    [Test]
    public void ALinearAddressIsTranslatedThroughTheGuestsPageTables()
    {
        var m = PagedMachine();
        MapWindowPage(m, 3, TestMachine.DataBase, P | RW);
        m.Execute(a =>
        {
            EnablePaging(a);
            a.mov(__dword_ptr[Window + 0x3000 + 0x10], 0x1234_5678);
            a.mov(ebx, __dword_ptr[TestMachine.DataBase + 0x10]);
        });
        Assert.That(m.Read32(TestMachine.DataBase + 0x10), Is.EqualTo(0x1234_5678u));
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x1234_5678u), "the identity mapping reads the same physical bytes");
        Assert.That(m.Cpu.PagingEnabled, Is.True);
    }

    [Test]
    public void ANotPresentPageRaisesPageFaultWithCr2AndTheErrorCodeAndRollsTheInstructionBack()
    {
        var m = PagedMachine();
        m.Load(a =>
        {
            EnablePaging(a);
            a.mov(ecx, 7);
            a.add(ecx, __dword_ptr[Window + 0x5004]);
            a.hlt();
        });
        uint faulting = TestMachine.CodeBase + 5 + 3 + 5;
        CpuExit exit = m.Cpu.Run(100);
        Assert.Multiple(() =>
        {
            Assert.That((exit.Reason, exit.Vector, exit.ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.PageFault, 0u)),
                "not present, read, supervisor: error code 0 (SDM 4.7)");
            Assert.That(m.Cpu.Cr2, Is.EqualTo(Window + 0x5004));
            Assert.That(m.Cpu.Eip, Is.EqualTo(faulting));
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(7u));
        });
    }

    [Test]
    public void AWriteToANotPresentPageHasTheWriteBitInItsErrorCode()
    {
        var m = PagedMachine();
        m.Load(a => { EnablePaging(a); a.mov(__dword_ptr[Window + 0x7ffc], eax); a.hlt(); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode, m.Cpu.Cr2), Is.EqualTo((ExceptionVector.PageFault, 2u, Window + 0x7ffc)));
    }

    [Test]
    public void SupervisorWritesToReadOnlyPagesFaultOnlyWithCr0Wp()
    {
        var m = PagedMachine();
        MapWindowPage(m, 1, TestMachine.DataBase, P);
        m.Execute(a => { EnablePaging(a); a.mov(__dword_ptr[Window + 0x1000], 0x55); });
        Assert.That(m.Read32(TestMachine.DataBase), Is.EqualTo(0x55u), "CR0.WP=0: a supervisor write ignores R/W");

        var wp = PagedMachine();
        MapWindowPage(wp, 1, TestMachine.DataBase, P);
        wp.Load(a => { EnablePaging(a, (uint)Cr0Flags.WP); a.mov(__dword_ptr[Window + 0x1000], 0x55); a.hlt(); });
        CpuExit exit = wp.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((ExceptionVector.PageFault, 3u)), "present + write");
        Assert.That(wp.Read32(TestMachine.DataBase), Is.Zero);
    }

    [Test]
    public void AReadSetsTheAccessedBitsAndAWriteSetsDirty()
    {
        var m = PagedMachine();
        MapWindowPage(m, 2, TestMachine.DataBase, P | RW);
        MapWindowPage(m, 3, TestMachine.DataBase + 0x1000, P | RW);
        m.Execute(a =>
        {
            EnablePaging(a);
            a.mov(eax, __dword_ptr[Window + 0x2000]);
            a.mov(__dword_ptr[Window + 0x3000], eax);
        });
        Assert.Multiple(() =>
        {
            Assert.That(m.Read32(WindowTable + 2 * 4) & (A | D), Is.EqualTo(A), "read: accessed only");
            Assert.That(m.Read32(WindowTable + 3 * 4) & (A | D), Is.EqualTo(A | D), "write: accessed and dirty");
            Assert.That(m.Read32(PageDirectory + (Window >> 22) * 4) & A, Is.EqualTo(A), "the PDE used by the walk");
            Assert.That(m.Read32(PageDirectory + (Window >> 22) * 4) & D, Is.Zero, "a PDE that points to a table has no dirty bit");
        });
    }

    [Test]
    public void AWriteThroughATranslationCachedByAReadStillSetsDirty()
    {
        var m = PagedMachine();
        MapWindowPage(m, 2, TestMachine.DataBase, P | RW);
        m.Execute(a =>
        {
            EnablePaging(a);
            a.mov(eax, __dword_ptr[Window + 0x2000]);   // fills the TLB with D=0
            a.mov(__dword_ptr[Window + 0x2004], eax);
        });
        Assert.That(m.Read32(WindowTable + 2 * 4) & D, Is.EqualTo(D));
    }

    [Test]
    public void FourMegabytePagesNeedCr4Pse()
    {
        var m = PagedMachine();
        // PDE 0x101 (linear 0x40400000) maps the 4 MiB page at physical 0 when PSE is on.
        m.Write32(PageDirectory + 0x101 * 4, 0 | P | RW | PS);
        m.Write32(TestMachine.DataBase, 0x4444);
        m.Execute(a =>
        {
            a.mov(eax, 0x10);               // CR4.PSE
            a.mov(cr4, eax);
            EnablePaging(a);
            a.mov(ebx, __dword_ptr[0x4040_0000 + TestMachine.DataBase]);
        });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x4444u));
        Assert.That(m.Read32(PageDirectory + 0x101 * 4) & (A | D), Is.EqualTo(A), "the 4 MiB PDE is the leaf: A set, D not");

        var nopse = PagedMachine();
        nopse.Write32(PageDirectory + 0x101 * 4, 0 | P | RW | PS);  // without PSE, PS is ignored: physical 0 is a page table
        // ...whose entry 0x20 (for offset 0x20000), at physical 0x80, is zero: not present.
        nopse.Load(a => { EnablePaging(a); a.mov(ebx, __dword_ptr[0x4040_0000 + TestMachine.DataBase]); a.hlt(); });
        CpuExit exit = nopse.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode), Is.EqualTo((ExceptionVector.PageFault, 0u)));
    }

    [Test]
    public void AReservedBitInAFourMegabytePdeIsAPageFaultWithRsvd()
    {
        var m = PagedMachine();
        m.Write32(PageDirectory + 0x101 * 4, P | RW | PS | (1u << 13)); // bit 13: reserved with MAXPHYADDR 32 (no PSE-36)
        m.Load(a => { a.mov(eax, 0x10); a.mov(cr4, eax); EnablePaging(a); a.mov(ebx, __dword_ptr[0x4040_0000]); a.hlt(); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode, m.Cpu.Cr2), Is.EqualTo((ExceptionVector.PageFault, 9u, 0x4040_0000u)), "P | RSVD");
    }

    [Test]
    public void ACr3ReloadKeepsGlobalTranslationsAndInvlpgDropsThem()
    {
        // SDM Vol. 3A, 4.10.4.1: MOV CR3 invalidates non-global TLB entries only (with CR4.PGE=1); INVLPG drops either.
        var m = PagedMachine();
        MapWindowPage(m, 0, TestMachine.DataBase, P | RW | G);
        MapWindowPage(m, 1, TestMachine.DataBase + 0x1000, P | RW);
        m.Write32(TestMachine.DataBase, 0xAAAA);
        m.Write32(TestMachine.DataBase + 0x1000, 0xBBBB);
        m.Write32(TestMachine.DataBase + 0x2000, 0xCCCC);
        m.Execute(a =>
        {
            a.mov(eax, 0x80);            // CR4.PGE
            a.mov(cr4, eax);
            EnablePaging(a);
            a.mov(eax, __dword_ptr[Window]);          // cache both translations
            a.mov(eax, __dword_ptr[Window + 0x1000]);
            // Point both PTEs at the third data page, then reload CR3.
            a.mov(__dword_ptr[WindowTable], (TestMachine.DataBase + 0x2000) | P | RW | G);
            a.mov(__dword_ptr[WindowTable + 4], (TestMachine.DataBase + 0x2000) | P | RW);
            a.mov(eax, cr3);
            a.mov(cr3, eax);
            a.mov(ebx, __dword_ptr[Window]);          // global: still the old page
            a.mov(ecx, __dword_ptr[Window + 0x1000]); // not global: walks again
            a.invlpg(__[Window]);
            a.mov(edx, __dword_ptr[Window]);          // now the new page
        });
        Assert.That((m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Edx]), Is.EqualTo((0xAAAAu, 0xCCCCu, 0xCCCCu)));
    }

    [Test]
    public void APageFaultIsDeliveredThroughTheIdtWithItsErrorCode()
    {
        var m = PagedMachine();
        m.Write32(IdtDescriptor, 256 * 8 - 1);
        m.Write32(IdtDescriptor + 2, Idt);
        m.Write32(Idt + 14 * 8, (Handler & 0xffff) | (0x08u << 16));
        m.Write32(Idt + 14 * 8 + 4, (Handler & 0xffff0000) | 0x8E00);
        m.Load(a =>
        {
            a.pop(esi);                  // the error code
            a.mov(edi, cr2);
            // Map the page the fault named, and return to the faulting instruction.
            a.mov(__dword_ptr[WindowTable + 9 * 4], TestMachine.DataBase | P | RW);
            a.iretd();
        }, Handler);
        m.Load(a =>
        {
            a.lidt(__[IdtDescriptor]);
            EnablePaging(a);
            a.mov(__dword_ptr[Window + 0x9008], 0x77);
            a.hlt();
        });
        m.RunToHalt();
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edi]), Is.EqualTo((2u, Window + 0x9008)));
        Assert.That(m.Read32(TestMachine.DataBase + 8), Is.EqualTo(0x77u), "the write retried after the handler mapped the page");
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
    }

    [Test]
    public void APageFaultInARepStringKeepsTheCompletedIterations()
    {
        var m = PagedMachine();
        MapWindowPage(m, 0, TestMachine.DataBase, P | RW);   // page 1 of the window is not present
        m.Load(a =>
        {
            EnablePaging(a);
            a.mov(edi, Window + 0xff8);
            a.mov(ecx, 4);
            a.mov(eax, 0x11111111);
            a.rep.stosd();
            a.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode, m.Cpu.Cr2), Is.EqualTo((ExceptionVector.PageFault, 2u, Window + 0x1000)));
        Assert.That((m.Cpu[Gpr.Ecx], m.Cpu[Gpr.Edi]), Is.EqualTo((2u, Window + 0x1000)), "two dwords stored before the fault");
        Assert.That(m.Read32(TestMachine.DataBase + 0xffc), Is.EqualTo(0x11111111u));
    }

    [Test]
    public void AFetchFromANotPresentPageFaultsWithCr2OnTheTarget()
    {
        var m = PagedMachine();
        m.Load(a => { EnablePaging(a); a.mov(eax, Window + 0x4010); a.jmp(eax); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Vector, exit.ErrorCode, m.Cpu.Cr2, m.Cpu.Eip), Is.EqualTo((ExceptionVector.PageFault, 0u, Window + 0x4010, Window + 0x4010)));
    }

    [Test]
    public void AnInstructionThatStraddlesIntoANotPresentPageFaultsOnItsSecondPart()
    {
        var m = PagedMachine();
        MapWindowPage(m, 0, TestMachine.DataBase, P | RW);
        // mov eax, imm32 (B8 + 4 bytes) starting 2 bytes before the end of the mapped page.
        m.WriteBytes(TestMachine.DataBase + 0xffe, [0xB8, 0x44]);
        m.Load(a => { EnablePaging(a); a.mov(eax, Window + 0xffe); a.jmp(eax); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Vector, m.Cpu.Cr2, m.Cpu.Eip), Is.EqualTo((ExceptionVector.PageFault, Window + 0x1000, Window + 0xffe)));
    }

    [Test]
    public void CodeWrittenThroughOneMappingRunsThroughAnother()
    {
        // The decode cache is keyed by guest-physical page: a write through any alias invalidates the code, and the same
        // physical code run at two linear addresses gets its own addresses (the call's return address).
        var m = PagedMachine();
        MapWindowPage(m, 0, TestMachine.DataBase, P | RW);
        MapWindowPage(m, 1, TestMachine.DataBase, P | RW);
        // mov eax, imm32; call next; next: pop ecx; ret  (ECX = the linear address of "next")
        m.WriteBytes(TestMachine.DataBase, GuestCode.Assemble(a =>
        {
            Label next = a.CreateLabel();
            a.mov(eax, 1);
            a.call(next);
            a.Label(ref next);
            a.pop(ecx);
            a.ret();
        }, 0));
        m.Execute(a =>
        {
            EnablePaging(a);
            a.mov(ebx, Window);
            a.call(ebx);                                   // runs at 0x40000000
            a.mov(esi, ecx);
            a.mov(__dword_ptr[Window + 0x1000 + 1], 2);    // patch the immediate through the second alias
            a.mov(ebx, Window + 0x1000);
            a.call(ebx);                                   // runs at 0x40001000
            a.mov(edi, ecx);
            a.mov(ebx, Window);
            a.call(ebx);
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(2u), "the patched instruction ran through the first alias");
        Assert.That((m.Cpu[Gpr.Esi], m.Cpu[Gpr.Edi], m.Cpu[Gpr.Ecx]), Is.EqualTo((Window + 10, Window + 0x1000 + 10, Window + 10)),
            "each mapping decodes with its own linear addresses");
    }

    [Test]
    public void APageTableOutsideRamIsAnInterceptThatCannotBeCompleted()
    {
        var m = PagedMachine();
        m.Write32(PageDirectory + (Window >> 22) * 4, 0x0800_0000 | P | RW); // the table's guest-physical page has no RAM
        m.Load(a => { EnablePaging(a); a.mov(eax, __dword_ptr[Window]); a.hlt(); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.GuestPhysicalAddress, exit.IsWrite), Is.EqualTo((CpuExitReason.MemoryIntercept, 0x0800_0000u, false)));
        Assert.That(m.Cpu.CanCompleteMemoryIntercept, Is.False);
    }

    [Test]
    public void SettingAnAccessedBitInAWriteProtectedTableExitsAtTheEntrysGuestPhysicalAddress()
    {
        // Dirty logging write-protects every page in the second-level table, the guest's page tables too: the walk's
        // A/D update is a guest-physical write that exits, and runs again once the kernel allows it.
        bool protect = true;
        var m = PagedMachine(page => !(protect && page == WindowTable));
        MapWindowPage(m, 0, TestMachine.DataBase, P | RW);
        m.Load(a => { EnablePaging(a); a.mov(eax, __dword_ptr[Window]); a.hlt(); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.GuestPhysicalAddress, exit.IsWrite), Is.EqualTo((CpuExitReason.MemoryIntercept, WindowTable, true)));
        m.Slat.Map(WindowTable >> 12, (int)(WindowTable >> 12), writable: true);
        m.RunToHalt();
        Assert.That(m.Read32(WindowTable) & A, Is.EqualTo(A));
    }

    [Test]
    public void ADeviceBehindAPageIsReachedAtItsGuestPhysicalAddress()
    {
        var m = PagedMachine();
        MapWindowPage(m, 0, 0xFEE0_0000, P | RW);  // no RAM there: an MMIO page
        m.Load(a => { EnablePaging(a); a.mov(eax, __dword_ptr[Window + 0x30]); a.hlt(); });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.GuestPhysicalAddress, exit.Size), Is.EqualTo((CpuExitReason.MemoryIntercept, 0xFEE0_0030u, (byte)4)));
        m.Cpu.CompleteMemoryIntercept(0x0005_0014);
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x0005_0014u));
    }

    [Test]
    public void AHandlerThatFaultsOnItsOwnFetchDoesNotHoldTheHostBeyondTheBudget()
    {
        var m = PagedMachine();
        m.Write32(IdtDescriptor, 256 * 8 - 1);
        m.Write32(IdtDescriptor + 2, Idt);
        // The #PF handler lives in the unmapped window: each delivery faults again on its fetch.
        m.Write32(Idt + 14 * 8, ((Window + 0x100) & 0xffff) | (0x08u << 16));
        m.Write32(Idt + 14 * 8 + 4, ((Window + 0x100) & 0xffff0000) | 0x8E00);
        m.Load(a => { a.lidt(__[IdtDescriptor]); EnablePaging(a); a.mov(eax, __dword_ptr[Window]); a.hlt(); });
        CpuExit exit = m.Cpu.Run(1000);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.BudgetExhausted));
        Assert.That(m.Cpu.Cr2, Is.EqualTo(Window + 0x100));
    }

    [Test]
    public void SavedStateCarriesPagingAndARestoredCoreTranslatesAgain()
    {
        var m = PagedMachine();
        MapWindowPage(m, 0, TestMachine.DataBase, P | RW);
        m.Write32(TestMachine.DataBase, 0x5151);
        m.Load(a => { EnablePaging(a); a.hlt(); a.mov(ebx, __dword_ptr[Window]); a.hlt(); });
        m.RunToHalt();
        CpuState saved = m.Cpu.SaveState();

        var copy = new TestMachine();
        m.Memory.Bytes.Slice(0, TestMachine.Pages * 4096).CopyTo(copy.Memory.Bytes);
        copy.Cpu.RestoreState(saved);
        copy.RunToHalt();
        Assert.That(copy.Cpu.PagingEnabled, Is.True);
        Assert.That(copy.Cpu[Gpr.Ebx], Is.EqualTo(0x5151u));
    }
}
