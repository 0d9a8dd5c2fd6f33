using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>PUSHA/POPA, PUSHF/POPF, ENTER/LEAVE, LOOPcc/JECXZ, flag instructions and self-modifying code.</summary>
public class StackAndControlTests
{
    [Test]
    public void PushadStoresRegistersWithOriginalEspAndPopadRestoresThem()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(eax, 1); asm.mov(ecx, 2); asm.mov(edx, 3); asm.mov(ebx, 4);
            asm.mov(ebp, 6); asm.mov(esi, 7); asm.mov(edi, 8);
            asm.pushad();
            asm.mov(ebx, __dword_ptr[esp + 12]); // the stored ESP
            asm.mov(__dword_ptr[esp + 12], 0);   // ignored by POPAD
            asm.mov(__dword_ptr[esp], 80);       // new EDI
            asm.xor(eax, eax); asm.xor(ecx, ecx);
            asm.popad();
        });
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(4));
            Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(1));
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(2));
            Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(80));
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(TestMachine.StackTop));
            Assert.That(m.Read32(TestMachine.StackTop - 20), Is.EqualTo(0), "slot of ESP was overwritten by the guest");
            Assert.That(m.Read32(TestMachine.StackTop - 4), Is.EqualTo(1), "EAX pushed first");
        });
    }

    [Test]
    public void PushfdPopfdRoundTripAndPopfdLoadsWritableBits()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.stc();
            asm.pushfd();
            asm.pop(eax);
            asm.push(0x00000ed5 | 0x200);
            asm.popfd();
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x3u));
        Assert.That(m.Cpu.Eflags, Is.EqualTo(0xed7u | 0x200), "status, DF, IF, OF loaded; bit 1 forced");
    }

    [Test]
    public void LahfSahfTransferLowFlags()
    {
        var m = new TestMachine();
        m.Cpu[Gpr.Eax] = 0xffff;
        m.Execute(asm =>
        {
            asm.sahf();      // SF ZF AF PF CF <- AH
            asm.mov(ebx, 0);
            asm.lahf();
        });
        Assert.That(m.Cpu.Eflags & F.Status, Is.EqualTo(F.SF | F.ZF | F.AF | F.PF | F.CF));
        Assert.That((m.Cpu[Gpr.Eax] >> 8) & 0xff, Is.EqualTo(0xd7));
    }

    [Test]
    public void FlagInstructionsSetClearAndComplement()
    {
        var m = new TestMachine();
        m.Execute(asm => { asm.stc(); asm.cmc(); asm.std(); asm.sti(); });
        Assert.That(m.Cpu.Eflags, Is.EqualTo(0x2u | 0x400 | 0x200));
        m.Execute(asm => { asm.cmc(); asm.cld(); asm.cli(); });
        Assert.That(m.Cpu.Eflags, Is.EqualTo(0x3u));
        m.Execute(asm => asm.clc());
        Assert.That(m.Cpu.Eflags, Is.EqualTo(0x2u));
    }

    [Test]
    public void EnterBuildsFrameAndLeaveTearsItDown()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(ebp, 0x1111);
            asm.enter(16, 0);
            asm.mov(eax, ebp);
            asm.mov(ebx, esp);
            asm.leave();
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(TestMachine.StackTop - 4));
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(TestMachine.StackTop - 4 - 16));
        Assert.That((m.Cpu[Gpr.Ebp], m.Cpu[Gpr.Esp]), Is.EqualTo((0x1111u, TestMachine.StackTop)));
    }

    [Test]
    public void EnterWithNestingLevelCopiesFramePointers()
    {
        var m = new TestMachine();
        uint outerFrame = TestMachine.StackTop - 0x100;
        m.Write32(outerFrame - 4, 0xaaaa); // display entry of the enclosing frame
        m.Execute(asm =>
        {
            asm.mov(ebp, outerFrame);
            asm.mov(esp, outerFrame - 0x10);
            asm.enter(8, 2);
        });
        uint frameTemp = outerFrame - 0x10 - 4;
        Assert.That(m.Read32(frameTemp), Is.EqualTo(outerFrame), "old EBP");
        Assert.That(m.Read32(frameTemp - 4), Is.EqualTo(0xaaaa), "copied display entry [EBP-4]");
        Assert.That(m.Read32(frameTemp - 8), Is.EqualTo(frameTemp), "new frame pointer");
        Assert.That((m.Cpu[Gpr.Ebp], m.Cpu[Gpr.Esp]), Is.EqualTo((frameTemp, frameTemp - 8 - 8)));
    }

    [Test]
    public void O16EnterAndLeaveUseTheWholeStackAndFramePointers()
    {
        // With a 32-bit stack, the stack-address size selects ESP/EBP even for 16-bit operands (SDM ENTER,
        // LEAVE): found by the Unicorn differential fuzzer (docs/conformance.md).
        var m = new TestMachine();
        uint frame = 0x2fff0; // bits 31-16 differ from the stack's, so BP-only updates would show
        m.Execute(asm =>
        {
            asm.mov(ebp, 0x1234_5678);
            asm.AddInstruction(Instruction.Create(Code.Enterw_imm16_imm8, 4, 0)); // push bp; ebp = esp; esp -= 4
            asm.mov(ecx, ebp);
            asm.mov(ebp, frame);
            asm.mov(__word_ptr[frame], 0xbeef);
            asm.AddInstruction(Instruction.Create(Code.Leavew));                 // esp = ebp; pop bp
        });
        Assert.Multiple(() =>
        {
            Assert.That(m.Cpu[Gpr.Ecx], Is.EqualTo(TestMachine.StackTop - 2), "ENTER: EBP <- ESP in full");
            Assert.That(m.Cpu[Gpr.Esp], Is.EqualTo(frame + 2), "LEAVE: ESP <- EBP in full");
            Assert.That(m.Cpu[Gpr.Ebp], Is.EqualTo((frame & 0xffff0000) | 0xbeef), "LEAVE: POP BP keeps bits 31-16");
        });
    }

    [Test]
    public void LoopFamilyCountsAndTestsZeroFlag()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            var l1 = asm.CreateLabel();
            var l2 = asm.CreateLabel();
            var l3 = asm.CreateLabel();
            var skip = asm.CreateLabel();
            asm.mov(ecx, 5);
            asm.xor(eax, eax);
            asm.Label(ref l1);
            asm.inc(eax);
            asm.loop(l1);              // 5 iterations
            asm.mov(ecx, 10);
            asm.xor(ebx, ebx);
            asm.Label(ref l2);
            asm.inc(ebx);
            asm.cmp(ebx, 3);
            asm.loopne(l2);            // stops when EBX == 3 (ZF=1)
            asm.mov(esi, ecx);
            asm.mov(ecx, 10);
            asm.xor(edx, edx);
            asm.Label(ref l3);
            asm.inc(edx);
            asm.cmp(edx, edx);
            asm.loope(l3);             // ZF stays 1: runs until ECX = 0
            asm.jecxz(skip);
            asm.mov(edi, 1);
            asm.Label(ref skip);
        });
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(5));
        Assert.That(m.Cpu[Gpr.Ebx], Is.EqualTo(3));
        Assert.That(m.Cpu[Gpr.Esi], Is.EqualTo(7));
        Assert.That(m.Cpu[Gpr.Edx], Is.EqualTo(10));
        Assert.That(m.Cpu[Gpr.Edi], Is.EqualTo(0), "JECXZ taken");
    }

    [Test]
    public void SelfModifyingCodeRewritesTheNextCachedInstruction()
    {
        var m = new TestMachine();
        const uint patch = TestMachine.CodeBase + 12; // immediate of "mov al, imm8" below
        byte[] code = m.Load(asm =>
        {
            var top = asm.CreateLabel();
            asm.mov(ecx, 3);                         // +0, 5 bytes
            asm.Label(ref top);
            asm.mov(__byte_ptr[patch], cl);          // +5, 6 bytes: patches the very next instruction
            asm.mov(al, 0);                          // +11: B0 imm8
            asm.add(bl, al);
            asm.dec(ecx);
            asm.jne(top);
            asm.hlt();
        });
        Assert.That(code[11], Is.EqualTo(0xb0), "layout assumption");
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Ebx] & 0xff, Is.EqualTo(3 + 2 + 1), "each pass executes the freshly written immediate");
    }

    [Test]
    public void HostWriteWithInvalidateCodeReplacesCachedInstructions()
    {
        var m = new TestMachine();
        m.Execute(asm => asm.mov(eax, 1));
        m.Execute(asm => asm.mov(eax, 2)); // Load writes through WriteBytes, which calls InvalidateCode
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(2));
    }

    [Test]
    public void RemappedCodePageIsDecodedFromTheNewFrame()
    {
        var m = new TestMachine();
        m.Execute(asm => asm.mov(eax, 1));
        m.Load(asm => { asm.mov(eax, 7); asm.hlt(); }, 0x60000);
        m.Slat.Map(TestMachine.CodeBase >> 12, 0x60, writable: true);
        m.Cpu.Eip = TestMachine.CodeBase;
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(7));
    }

    [Test]
    public void InstructionStraddlingPagesExecutes()
    {
        var m = new TestMachine();
        const uint start = 0x2ffd;  // mov eax, imm32 (5 bytes) crosses into page 0x3
        m.Load(asm => { asm.mov(eax, 0x12345678); asm.mov(ebx, 0x1); asm.hlt(); }, start);
        m.RunToHalt();
        m.Cpu.Eip = start;
        m.RunToHalt();
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(0x12345678));
    }
}
