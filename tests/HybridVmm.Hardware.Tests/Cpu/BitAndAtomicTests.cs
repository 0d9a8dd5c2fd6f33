using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>BT family, BSF/BSR, BSWAP, XCHG/XADD/CMPXCHG/CMPXCHG8B, conversions, SETcc/CMOVcc and prefixes.</summary>
public class BitAndAtomicTests
{
    [TestCase(Code.Bt_rm32_imm8, 0x80000000u, 31, 0x80000000u, true)]
    [TestCase(Code.Bts_rm32_imm8, 0u, 33, 2u, false)]          // imm masked to 5 bits
    [TestCase(Code.Btr_rm32_imm8, 0xffffffffu, 0, 0xfffffffeu, true)]
    [TestCase(Code.Btc_rm32_imm8, 0x10u, 4, 0u, true)]
    [TestCase(Code.Btc_rm16_imm8, 0x0u, 15, 0x8000u, false)]
    public void BitTestImmediateOnRegisterSetsOnlyCarry(Code code, uint value, int bit, uint expected, bool carry)
    {
        var m = new TestMachine();
        Register r = code.ToString().Contains("16") ? Register.AX : Register.EAX;
        var (eax, flags) = ArithmeticFlagsTests.RunOne(m, Instruction.Create(code, r, bit), value, 0, 0x8d6);
        Assert.That(eax & (r == Register.AX ? 0xffffu : 0xffffffffu), Is.EqualTo(expected));
        Assert.That(flags, Is.EqualTo(0x8d6u | (carry ? F.CF : 0)), "only CF changes");
    }

    [Test]
    public void BitTestRegisterOffsetAddressesABitStringBeyondTheOperand()
    {
        var m = new TestMachine();
        const uint bitmap = TestMachine.DataBase + 0x40;
        m.Write32(bitmap - 4, 0x80000000);  // bit -1
        m.Execute(asm =>
        {
            asm.mov(ecx, 100);                        // dword 3, bit 4
            asm.bts(__dword_ptr[bitmap], ecx);
            asm.mov(edx, -1);
            asm.bt(__dword_ptr[bitmap], edx);         // bit -1 lives in the dword before the base
            asm.setc(bl);
            asm.mov(ecx, 0x21);
            asm.btr(__word_ptr[bitmap + 12], cx);     // 16-bit: word +2 of that dword, bit 1
        });
        Assert.That(m.Read32(bitmap + 12), Is.EqualTo(0x10u));
        Assert.That(m.Cpu[Gpr.Ebx] & 0xff, Is.EqualTo(1));
    }

    [TestCase(0x00000100u, 8u, 8u)]
    [TestCase(0x80000001u, 0u, 31u)]
    [TestCase(0xffffffffu, 0u, 31u)]
    public void BsfAndBsrFindLowestAndHighestSetBit(uint value, uint forward, uint reverse)
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = value;
        m.Execute(asm => { asm.bsf(ebx, eax); asm.bsr(ecx, eax); });
        Assert.That((m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx]), Is.EqualTo((forward, reverse)));
        Assert.That(m.Cpu.Eflags & F.ZF, Is.EqualTo(0));
    }

    [Test]
    public void BsfOfZeroSetsZeroFlagAndLeavesDestination()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Ebx] = 0x1234;
        m.Cpu[Gpr.Ecx] = 0x5678;
        m.Execute(asm => { asm.xor(eax, eax); asm.bsf(bx, ax); asm.bsr(ecx, eax); });
        Assert.That((m.Cpu[Gpr.Ebx], m.Cpu[Gpr.Ecx]), Is.EqualTo((0x1234u, 0x5678u)));
        Assert.That(m.Cpu.Eflags & F.ZF, Is.EqualTo(F.ZF));
    }

    [Test]
    public void BswapReversesBytes()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Esi] = 0x11223344;
        m.Execute(asm => asm.bswap(esi));
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(0x44332211));
    }

    [Test]
    public void XchgAndXaddExchangeOperands()
    {
        var m = new TestMachine();
        m.Write32(TestMachine.DataBase, 10);
        m.Execute(asm =>
        {
            asm.mov(eax, 1);
            asm.mov(ebx, 2);
            asm.xchg(eax, ebx);
            asm.mov(ecx, 5);
            asm.@lock.xadd(__dword_ptr[TestMachine.DataBase], ecx);
            asm.mov(dl, 0x7f);
            asm.mov(dh, 1);
            asm.xadd(dl, dh);
        });
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Ebx]), Is.EqualTo((2u, 1u)));
        Assert.That((m.Cpu[Gpr.Ecx], m.Read32(TestMachine.DataBase)), Is.EqualTo((10u, 15u)));
        Assert.That(m.Cpu[Gpr.Edx] & 0xffff, Is.EqualTo(0x7f80), "DL = sum, DH = old DL");
        Assert.That(m.Cpu.Eflags & (F.OF | F.SF), Is.EqualTo(F.OF | F.SF));
    }

    [Test]
    public void CmpxchgStoresOnMatchAndLoadsAccumulatorOnMismatch()
    {
        var m = new TestMachine();
        m.Write32(TestMachine.DataBase, 7);
        m.Execute(asm =>
        {
            asm.mov(eax, 7);
            asm.mov(ecx, 9);
            asm.@lock.cmpxchg(__dword_ptr[TestMachine.DataBase], ecx);
            asm.setz(bl);
            asm.mov(eax, 1);
            asm.cmpxchg(__dword_ptr[TestMachine.DataBase], ecx);
            asm.setz(bh);
        });
        Assert.That(m.Read32(TestMachine.DataBase), Is.EqualTo(9));
        Assert.That(m.Cpu[Gpr.Ebx] & 0xffff, Is.EqualTo(0x0001), "first succeeded, second failed");
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(9), "mismatch loads the current value");
    }

    [Test]
    public void Cmpxchg8bComparesEdxEaxWithQuadword()
    {
        var m = new TestMachine();
        m.Write32(TestMachine.DataBase, 0x11111111);
        m.Write32(TestMachine.DataBase + 4, 0x22222222);
        m.Execute(asm =>
        {
            asm.mov(eax, 0x11111111);
            asm.mov(edx, 0x22222222);
            asm.mov(ebx, 0x33333333);
            asm.mov(ecx, 0x44444444);
            asm.@lock.cmpxchg8b(__qword_ptr[TestMachine.DataBase]);
            asm.setz(__byte_ptr[TestMachine.DataBase + 0x10]);
            asm.xor(eax, eax);
            asm.cmpxchg8b(__qword_ptr[TestMachine.DataBase]);
        });
        Assert.That(m.Read32(TestMachine.DataBase), Is.EqualTo(0x33333333));
        Assert.That(m.Read32(TestMachine.DataBase + 4), Is.EqualTo(0x44444444));
        Assert.That(m.Read8(TestMachine.DataBase + 0x10), Is.EqualTo(1));
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Edx]), Is.EqualTo((0x33333333u, 0x44444444u)));
        Assert.That(m.Cpu.Eflags & F.ZF, Is.EqualTo(0));
    }

    [Test]
    public void SignExtensionConversions()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(eax, 0x12345680);
            asm.cbw();          // AX = FF80
            asm.mov(ebx, eax);
            asm.cwde();         // EAX = FFFFFF80
            asm.mov(ecx, eax);
            asm.cdq();          // EDX = FFFFFFFF
            asm.mov(esi, edx);
            asm.mov(eax, 0x8000);
            asm.mov(edx, 0x12340000);
            asm.cwd();          // DX = FFFF
        });
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(0x1234ff80));
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(0xffffff80));
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(0xffffffff));
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(0x1234ffff));
    }

    [TestCase(5, 3, 1u, 0u)]    // greater: setg=1, setb=0
    [TestCase(-1, 1, 0u, 0u)]   // signed less, unsigned above
    [TestCase(1, -1, 1u, 1u)]   // signed greater, unsigned below
    public void SetccAndCmovccFollowComparison(int a, int b, uint greater, uint below)
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = (uint)a;
        m.Cpu[Gpr.Ebx] = (uint)b;
        m.Execute(asm =>
        {
            asm.mov(esi, 100);
            asm.mov(edi, 200);
            asm.cmp(eax, ebx);
            asm.setg(cl);
            asm.setb(ch);
            asm.cmovg(esi, edi);
        });
        Assert.That(m.Cpu[Gpr.Ecx] & 0xff, Is.EqualTo(greater));
        Assert.That((m.Cpu[Gpr.Ecx] >> 8) & 0xff, Is.EqualTo(below));
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(greater == 1 ? 200u : 100u));
    }

    [Test]
    public void NopFormsEmittedByGccAreSkipped()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.db(0x90);
            asm.db(0x66, 0x90);
            asm.db(0x0f, 0x1f, 0x00);
            asm.db(0x0f, 0x1f, 0x44, 0x00, 0x00);                         // nop [eax+eax]
            asm.db(0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00);
            asm.db(0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00);
            asm.db(0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00); // nop cs:[eax+eax]
            asm.db(0x8d, 0xb4, 0x26, 0x00, 0x00, 0x00, 0x00);             // lea esi,[esi]
            asm.db(0x8d, 0x76, 0x00);
            asm.pause();
            asm.mov(eax, 1);
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(1));
        Assert.That(m.Cpu.InstructionsRetired, Is.EqualTo(12));
    }

    [Test]
    public void SixteenBitOperandSizeAndSegmentOverridesWork()
    {
        var m = new TestMachine();
        m.Write32(TestMachine.DataBase, 0xffff0001);
        m.Execute(asm =>
        {
            asm.mov(eax, 0x1234ffff);
            asm.add(ax, 1);                                  // 16-bit wrap, CF=1, upper half kept
            asm.setc(bl);
            asm.mov(ecx, __dword_ptr[TestMachine.DataBase]);
            asm.add(cx, __word_ptr[TestMachine.DataBase]);
            asm.mov(edx, __dword_ptr.fs[TestMachine.DataBase]); // flat: override ignored
            asm.push(ax);
            asm.pop(si);
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x12340000));
        Assert.That(m.Cpu[Gpr.Ebx] & 0xff, Is.EqualTo(1));
        Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(0xffff0002));
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(0xffff0001));
        Assert.That(m.Cpu[Gpr.Esi] & 0xffff, Is.EqualTo(0));
        Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
    }

    [Test]
    public void RdtscIsInstructionsRetiredPlusOffset()
    {
        var m = new TestMachine();
        m.Cpu.TscOffset = 0x1_0000_0000;
        m.Execute(asm => { asm.nop(); asm.nop(); asm.rdtsc(); });
        Assert.That((m.Cpu[Gpr.Eax], m.Cpu[Gpr.Edx]), Is.EqualTo((2u, 1u)));
    }

    [Test]
    public void LgdtAndLidtStoreDescriptorTableRegisters()
    {
        var m = new TestMachine();
        m.WriteBytes(TestMachine.DataBase, new byte[] { 0x17, 0x00, 0x00, 0x10, 0x02, 0x00 });
        // The GDT at 0x21000: null, flat code (0x08), flat data (0x10).
        m.WriteBytes(0x21008, BitConverter.GetBytes(0x00CF_9A00_0000_FFFFUL));
        m.WriteBytes(0x21010, BitConverter.GetBytes(0x00CF_9200_0000_FFFFUL));
        m.Execute(asm =>
        {
            asm.lgdt(__fword_ptr[TestMachine.DataBase]);
            asm.lidt(__fword_ptr[TestMachine.DataBase]);
            asm.sgdt(__fword_ptr[TestMachine.DataBase + 0x10]);
            asm.mov(ax, 0x10);
            asm.mov(ds, ax);
            asm.mov(ss, ax);
        });
        Assert.That(m.Cpu.Gdtr, Is.EqualTo(new DescriptorTableRegister(0x21000, 0x17)));
        Assert.That(m.Cpu.Idtr, Is.EqualTo(new DescriptorTableRegister(0x21000, 0x17)));
        Assert.That(m.Read32(TestMachine.DataBase + 0x12), Is.EqualTo(0x21000));
        Assert.That(m.Cpu.Ds, Is.EqualTo(0x10));
        Assert.That(m.Read8(0x21015), Is.EqualTo(0x93), "loading the descriptor set its accessed bit");
    }

    [Test]
    public void XlatTranslatesThroughTable()
    {
        var m = new TestMachine();
        m.WriteBytes(TestMachine.DataBase, new byte[] { 10, 11, 12, 13 });
        m.Execute(asm => { asm.mov(ebx, TestMachine.DataBase); asm.mov(eax, 0xffffff02); asm.xlatb(); });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0xffffff0c));
    }
}
