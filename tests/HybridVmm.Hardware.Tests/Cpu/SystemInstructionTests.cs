using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>Segment registers, control registers, software interrupts and the less common encodings.</summary>
public class SystemInstructionTests
{
    [Test]
    public void SegmentRegistersMoveThroughStackAndRegisters()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(ax, 0x23);
            asm.mov(es, ax);
            asm.push(es);
            asm.pop(fs);
            asm.mov(ebx, 0xffffffff);
            asm.mov(ebx, fs);      // zero-extends into a 32-bit register
            asm.mov(__word_ptr[TestMachine.DataBase], gs);
        });
        Assert.That((m.Cpu.Es, m.Cpu.Fs), Is.EqualTo(((ushort)0x23, (ushort)0x23)));
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x23));
        Assert.That(m.Read32(TestMachine.DataBase) & 0xffff, Is.EqualTo(0x10));
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
    }

    [Test]
    public void ControlRegistersAreReadableAndWritable()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(eax, cr0);
            asm.or(eax, 0x10);
            asm.mov(cr0, eax);
            asm.mov(ebx, 0x5000);
            asm.mov(cr3, ebx);
            asm.mov(ecx, cr3);
        });
        Assert.That(m.Cpu.Cr0, Is.EqualTo(0x11));
        Assert.That((m.Cpu.Cr3, m.Cpu[Gpr.Ecx]), Is.EqualTo((0x5000u, 0x5000u)));
    }

    [Test]
    public void WbinvdAndInvdRetireInRing0()
    {
        var m = new TestMachine();
        m.Load(asm => { asm.wbinvd(); asm.invd(); asm.mov(eax, 0x1234); asm.hlt(); });
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, m.Cpu[Gpr.Eax]), Is.EqualTo((CpuExitReason.Halt, 0x1234u)), "no caches to flush, no fault at CPL 0");
    }

    [TestCase(0x80000000u, Description = "PG without PE (SDM Vol. 2B, MOV CR: #GP(0))")]
    [TestCase(0x20000001u, Description = "NW without CD")]
    public void InvalidCr0LoadsRaiseGeneralProtectionAndLeaveCr0Unchanged(uint value)
    {
        var m = new TestMachine();
        m.Load(asm => { asm.mov(eax, value); asm.mov(cr0, eax); asm.hlt(); });
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, exit.Vector, exit.ErrorCode), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.GeneralProtection, 0u)));
        Assert.That(m.Cpu.Cr0, Is.EqualTo(0x11), "PE and the hardwired ET");
    }

    [Test]
    public void Cr0ReservedBitsAreIgnoredAndEtReadsAsOne()
    {
        // SDM Vol. 3A, 2.5: writes to reserved bits of CR0[31:0] are ignored; ET is hardwired to 1.
        var m = new TestMachine();
        m.Execute(asm => { asm.mov(eax, 0x0000_ff01); asm.mov(cr0, eax); asm.mov(ebx, cr0); });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x11u));
    }

    [TestCase(1u << 13, Description = "VMXE: no VMX")]
    [TestCase(1u << 10, Description = "OSXMMEXCPT: no SSE")]
    [TestCase(1u << 12, Description = "a reserved bit")]
    public void Cr4BitsForAbsentFeaturesRaiseGeneralProtection(uint bit)
    {
        var m = new TestMachine();
        m.Load(asm => { asm.mov(eax, bit | 0x90); asm.mov(cr4, eax); asm.hlt(); });
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.GeneralProtection)));
        Assert.That(m.Cpu.Cr4, Is.Zero);
    }

    /// <summary>
    /// SDM Vol. 3A, 4.4.1: with PAE paging in use, a MOV to CR3 (and a MOV to CR0 or CR4 that turns it on) loads the four
    /// PDPTEs, and one that is present with a reserved bit set (here bit 36: MAXPHYADDR is 36, so bits 63:36 of a PDPTE
    /// are reserved) is #GP(0), CR3 unchanged.
    /// </summary>
    [Test]
    public void APdpteWithAReservedBitMakesTheMovToCr3GeneralProtection()
    {
        var m = new TestMachine();
        const uint good = 0x30000, bad = 0x30020, directory = 0x31000;
        m.Write32(good, directory | 1);            // PDPTE 0 -> a page directory whose entry 0 identity-maps 2 MiB
        m.Write32(bad, directory | 1);
        m.Write32(bad + 4, 0x10);                  // bit 36: reserved
        m.Write32(directory, 0x83);
        m.Load(asm =>
        {
            asm.mov(eax, good); asm.mov(cr3, eax);
            asm.mov(eax, 0x20); asm.mov(cr4, eax); // PAE
            asm.mov(eax, cr0); asm.or(eax, unchecked((int)0x8000_0001)); asm.mov(cr0, eax);
            asm.mov(eax, bad); asm.mov(cr3, eax);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.GeneralProtection)));
        Assert.That(m.Cpu.Cr3, Is.EqualTo(good), "the faulting MOV changed nothing");
        Assert.That(m.Cpu.PagingEnabled, Is.True, "PAE paging through the good PDPT ran the code up to it");
    }

    /// <summary>
    /// SDM Vol. 3A, 4.4.1 and table 4-8: with MAXPHYADDR 36, a PDPTE's bits 35:32 are address bits, not reserved. The MOV
    /// to CR3 succeeds, and the next fetch's walk reads the page directory at its 36-bit address (no RAM there in this
    /// machine: the walk's read exits to the hypervisor with that address).
    /// </summary>
    [Test]
    public void APdpteNamingAPageDirectoryAbove4GiBIsNoGeneralProtection()
    {
        var m = new TestMachine();
        const uint good = 0x30000, high = 0x30020, directory = 0x31000;
        m.Write32(good, directory | 1);
        m.Write32(high, directory | 1);
        m.Write32(high + 4, 0xF);                  // bits 35:32: a directory above 4 GiB (not RAM here, and never walked)
        m.Write32(directory, 0x83);
        m.Load(asm =>
        {
            asm.mov(eax, good); asm.mov(cr3, eax);
            asm.mov(eax, 0x20); asm.mov(cr4, eax);
            asm.mov(eax, cr0); asm.or(eax, unchecked((int)0x8000_0001)); asm.mov(cr0, eax);
            asm.mov(ebx, high); asm.mov(cr3, ebx);
            asm.hlt();
        });
        CpuExit exit = m.Cpu.Run(100);
        Assert.That((exit.Reason, exit.GuestPhysicalAddress), Is.EqualTo((CpuExitReason.MemoryIntercept, 0xF_0003_1000UL)));
        Assert.That(m.Cpu.Cr3, Is.EqualTo(high));
    }

    [Test]
    public void Cr4AcceptsPsePgeAndOsfxsr()
    {
        // OSFXSR (bit 9) belongs to FXSAVE/FXRSTOR, which CPUID reports (FXSR); Linux sets it when CPUID does.
        var m = new TestMachine();
        m.Execute(asm => { asm.mov(eax, 0x290); asm.mov(cr4, eax); asm.mov(ebx, cr4); });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x290u));
    }

    [TestCase(new byte[] { 0xcd, 0x80 }, (byte)0x80)]
    [TestCase(new byte[] { 0xcc }, ExceptionVector.Breakpoint)]
    public void SoftwareInterruptExitsWithItsVectorUntilIdtDeliveryExists(byte[] code, byte vector)
    {
        var m = new TestMachine();
        m.WriteBytes(TestMachine.CodeBase, code);
        m.Cpu.Eip = TestMachine.CodeBase;
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, vector)));
        Assert.That(m.Cpu.Eip, Is.EqualTo(TestMachine.CodeBase));
    }

    [Test]
    public void IntoTrapsOnlyWhenOverflowIsSet()
    {
        var m = new TestMachine();
        m.Load(asm => { asm.into(); asm.mov(eax, 0x7fffffff); asm.inc(eax); asm.into(); asm.hlt(); });
        CpuExit exit = m.Cpu.Run(10);
        Assert.That((exit.Reason, exit.Vector), Is.EqualTo((CpuExitReason.Exception, ExceptionVector.Overflow)));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(3));
    }

    // F3 0F BC/BD run as BSF/BSR (SDM Vol. 2B): ZF set and the destination left alone for a zero source (as Intel and AMD
    // parts and QEMU do), otherwise the lowest (highest) set bit's index with ZF clear. TZCNT would give 32 with CF set,
    // and 0 with ZF set for bit 0; LZCNT likewise.
    [TestCase(0xbc, 0x00000000u, 0xDEADBEEFu, F.ZF)]
    [TestCase(0xbc, 0x00000001u, 0u, 0u)]
    [TestCase(0xbc, 0x80000000u, 31u, 0u)]
    [TestCase(0xbd, 0x00000000u, 0xDEADBEEFu, F.ZF)]
    [TestCase(0xbd, 0x00000001u, 0u, 0u)]
    [TestCase(0xbd, 0x00F00000u, 23u, 0u)]
    public void RepBsfAndRepBsrRunAsBsfAndBsrBecauseCpuidClaimsNeitherBmi1NorLzcnt(byte opcode, uint source, uint expected, uint zf)
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = 0xDEADBEEF;
        m.Cpu[Gpr.Ebx] = source;
        m.Execute(asm => asm.db(0xf3, 0x0f, opcode, 0xc3)); // rep bsf/bsr eax, ebx (Iced: tzcnt/lzcnt eax, ebx)
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(expected));
        Assert.That(m.Cpu.Eflags & F.ZF, Is.EqualTo(zf));
    }

    [Test]
    public void StringInstructionWithSixteenBitAddressSizeWalksSiAndDiAndCountsWithCxWrappingAt64KiB()
    {
        // SDM Vol. 2B, MOVS: with a 16-bit address size the source is DS:SI, the destination ES:DI and the count CX;
        // only their low halves change, and SI wraps from 0xFFFF to 0.
        var m = new TestMachine();
        m.WriteBytes(0xFFFF, [0x11]);
        m.WriteBytes(0x0000, [0x22, 0x33]);
        m.Execute(asm =>
        {
            asm.mov(esi, 0xABCD_FFFFu);
            asm.mov(edi, 0x1234_0020u);
            asm.mov(ecx, 0x5555_0003u);
            asm.db(0xf3, 0x67, 0xa4); // rep movsb with 16-bit addressing
        });
        Assert.Multiple(() =>
        {
            Assert.That((m.Read8(0x20), m.Read8(0x21), m.Read8(0x22)), Is.EqualTo(((byte)0x11, (byte)0x22, (byte)0x33)));
            Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(0xABCD_0002u));
            Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(0x1234_0023u));
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(0x5555_0000u));
        });
    }

    [TestCase(true, 0x1234_56FFu)]
    [TestCase(false, 0x1234_5600u)]
    public void SalcSetsAlFromTheCarryFlagAndLeavesTheFlags(bool carry, uint expected)
    {
        // SALC (0xD6): AL = CF ? 0xFF : 0; what QEMU does and kvm-unit-tests' realmode test checks.
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(eax, 0x1234_5678u);
            if (carry) asm.stc(); else asm.clc();
            asm.db((byte)0xd6);
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(expected));
        Assert.That(m.Cpu.Eflags & 1, Is.EqualTo(carry ? 1u : 0u));
    }

    [Test]
    public void SixteenBitAddressingWrapsAt64KiB()
    {
        var m = new TestMachine();
        m.Write32(0x0010, 0xabcd);
        m.Execute(asm =>
        {
            asm.mov(ebx, 0x1fff0);
            asm.db(0x67, 0x8b, 0x47, 0x20); // mov eax, [bx+0x20] -> 0xfff0 + 0x20 wraps to 0x0010
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0xabcd));
    }

    [Test]
    public void PushfwAndPopfwMoveSixteenBits()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.stc();
            asm.pushf();
            asm.pop(ax);
            asm.db(0x66, 0x68, 0x40, 0x08);  // push word 0x0840 (OF | ZF)
            asm.popf();
        });
        Assert.That(m.Cpu[Gpr.Eax] & 0xffff, Is.EqualTo(3));
        Assert.That(m.Cpu.Eflags & F.Status, Is.EqualTo(F.OF | F.ZF));
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
    }

    [Test]
    public void EipAndDataAccessesWrapAroundFourGiB()
    {
        var memory = new HybridVmm.Hardware.Memory.HostPhysicalMemory(2);
        var slat = new HybridVmm.Hardware.Memory.SecondLevelPageTable(1 << 20);
        slat.Map(0xfffff, 1, writable: true);
        slat.Map(0, 0, writable: true);
        var cpu = new X86Core(memory, slat);
        cpu.ResetToFlatProtectedMode(0xffffffff);
        memory.Bytes[0x1fff] = 0x90;                                          // nop at 0xffffffff
        new byte[] { 0xa1, 0xfe, 0xff, 0xff, 0xff, 0xf4 }.CopyTo(memory.Bytes); // mov eax,[0xfffffffe]; hlt
        memory.Bytes[0x1ffe] = 0x11;
        cpu.InvalidateCode(0, 8);
        CpuExit exit = cpu.Run(10);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Halt), cpu.DescribeState());
        Assert.That(cpu[Gpr.Eax], Is.EqualTo(0xfea19011u), "bytes ffffFFFE..0x00000001");
        Assert.That(cpu.Eip, Is.EqualTo(6));
    }
}
