using HybridVmm.Hardware.Cpu;
using HybridVmm.Testing;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Real-address mode (SDM Vol. 3A, chapter 20, and 10.9.2 for the switch). The sample guest <c>realmode</c> runs a
/// trampoline through it identically under QEMU; these pin down the rules one at a time.
/// </summary>
public class RealModeTests
{
    private const uint Gdt = 0x30000, GdtDescriptor = 0x2F000, Code16 = 0x4000, RealCode = 0x5000;
    private const ushort Code32 = 0x08, Data32 = 0x10, Code16Selector = 0x18, Data16 = 0x20;

    private static byte[] Assemble16(Action<Assembler> build, uint address) => GuestCode.Assemble(build, address, bitness: 16);

    /// <summary>
    /// A machine that goes from flat 32-bit protected mode through a 16-bit code segment into real mode, with DS and SS
    /// still holding 4 GiB and 64 KiB caches, and runs <paramref name="real"/> at 0x0500:0000 (linear 0x5000).
    /// </summary>
    private static TestMachine EnterRealMode(Action<Assembler> real)
    {
        var m = new TestMachine();
        ulong[] gdt = [0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF, 0x00009B000000FFFF, 0x000093000000FFFF];
        for (int i = 0; i < gdt.Length; i++)
        {
            m.WriteBytes(Gdt + (uint)i * 8, BitConverter.GetBytes(gdt[i]));
        }
        m.WriteBytes(GdtDescriptor, BitConverter.GetBytes((ushort)(gdt.Length * 8 - 1)));
        m.Write32(GdtDescriptor + 2, Gdt);
        m.Load(a =>
        {
            a.lgdt(__[GdtDescriptor]);
            a.mov(ax, Data32);
            a.mov(ds, ax);                  // a 4 GiB data segment: real mode keeps its limit ("unreal mode")
            a.mov(ax, Data16);
            a.mov(ss, ax);                  // a 16-bit stack segment: SP, not ESP
            a.mov(esp, 0x1F00);
            a.jmp(Code16Selector, Code16);
        });
        m.WriteBytes(Code16, Assemble16(a =>
        {
            a.mov(eax, cr0);
            a.and(eax, ~1);
            a.mov(cr0, eax);
            a.jmp(0x0500, 0);
        }, Code16));
        m.WriteBytes(RealCode, Assemble16(a =>
        {
            real(a);
            a.hlt();
        }, 0));
        return m;
    }

    [Test]
    public void ASegmentLoadInRealModeSetsTheBaseToTheSelectorTimesSixteenAndKeepsTheLimit()
    {
        TestMachine m = EnterRealMode(a =>
        {
            a.mov(ax, 0x1000);
            a.mov(ds, ax);
            a.mov(ebx, 0x0002_0000);
            a.mov(__dword_ptr[ebx], 0x5EA1F00Du); // DS:0x20000, past 64 KiB: the 4 GiB limit loaded in protected mode still applies
            a.mov(cx, cs);
        });
        m.RunToHalt();
        Assert.Multiple(() =>
        {
            Assert.That(m.Read32(0x10000 + 0x20000), Is.EqualTo(0x5EA1F00Du), "linear = 0x1000 × 16 + 0x20000");
            Assert.That(m.Cpu.GetSegment(Sreg.Ds).Base, Is.EqualTo(0x10000u));
            Assert.That(m.Cpu.GetSegment(Sreg.Ds).Limit, Is.EqualTo(0xFFFF_FFFFu));
            Assert.That(m.Cpu[Gpr.Ecx] & 0xFFFF, Is.EqualTo(0x0500u));
            Assert.That(m.Cpu.GetSegment(Sreg.Cs).Base, Is.EqualTo(0x5000u));
            Assert.That(m.Cpu.Cr0 & 1, Is.Zero);
        });
    }

    [Test]
    public void PushAndPopUseSpAndWrapAtSixtyFourKibibytesWhenSsIsASixteenBitSegment()
    {
        TestMachine m = EnterRealMode(a =>
        {
            a.xor(ax, ax);
            a.mov(ss, ax);
            a.mov(esp, 0xABCD_0002);
            a.push(0x1234);                   // SP 2 -> 0
            a.push(0x5678);                   // SP wraps to 0xFFFE: written at SS:0xFFFE
            a.pop(bx);
            a.pop(cx);
        });
        m.RunToHalt();
        Assert.Multiple(() =>
        {
            Assert.That(m.Read32(0xFFFE) & 0xFFFF, Is.EqualTo(0x5678u));
            Assert.That(m.Cpu[Gpr.Ebx] & 0xFFFF, Is.EqualTo(0x5678u));
            Assert.That(m.Cpu[Gpr.Ecx] & 0xFFFF, Is.EqualTo(0x1234u));
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(0xABCD_0002u), "ESP's upper half is untouched");
        });
    }

    [Test]
    public void AnInterruptInRealModeGoesThroughTheVectorTableAndPushesFlagsCsAndIp()
    {
        TestMachine m = EnterRealMode(a =>
        {
            a.xor(ax, ax);
            a.mov(ss, ax);
            a.mov(sp, 0x1F00);
            a.@int(0x21);
            a.mov(dx, 0x77);
        });
        // IDTR is base 0, limit 0x3FF after the lidt the guest would do; vector 0x21 -> 0x0600:0x0010.
        m.Cpu.Idtr = new DescriptorTableRegister(0, 0x3FF);
        m.Write32(0x21 * 4, 0x0600_0010);
        m.WriteBytes(0x6010, Assemble16(a =>
        {
            a.mov(bp, sp);
            a.mov(si, __word_ptr[bp]);       // IP
            a.mov(di, __word_ptr[bp + 2]);   // CS
            a.pushf();
            a.pop(bx);
            a.iret();
        }, 0x10));
        m.Cpu.Eflags |= 0x200; // IF, which the handler sees cleared
        m.RunToHalt();
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Edi] & 0xFFFF, Is.EqualTo(0x0500u), "the pushed CS");
            Assert.That(m.Cpu[Gpr.Esi] & 0xFFFF, Is.EqualTo(9u), "the pushed IP is the instruction after INT 21h (XOR 2, MOV SS 2, MOV SP 3, INT 2 bytes)");
            Assert.That(m.Cpu[Gpr.Ebx] & 0x200, Is.Zero, "IF is clear in the handler");
            Assert.That(m.Cpu[Gpr.Edx] & 0xFFFF, Is.EqualTo(0x77u), "IRET returned");
            Assert.That(m.Cpu[Gpr.Esp] & 0xFFFF, Is.EqualTo(0x1F00u));
        });
    }
}
