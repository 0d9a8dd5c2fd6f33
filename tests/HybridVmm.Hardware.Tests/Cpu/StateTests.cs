using HybridVmm.Hardware.Cpu;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

public class StateTests
{
    [Test]
    public void SaveAndRestoreStateResumesIdentically()
    {
        var m = new TestMachine();
        m.Load(asm =>
        {
            var top = asm.CreateLabel();
            asm.Label(ref top);
            asm.add(eax, 3);
            asm.rol(eax, 5);
            asm.adc(ebx, eax);
            asm.jmp(top);
        });
        m.Cpu.Run(1000);
        CpuState saved = m.Cpu.SaveState();
        m.Cpu.Run(777);
        CpuState after = m.Cpu.SaveState();

        m.Cpu.ResetToFlatProtectedMode(0);
        m.Cpu.RestoreState(saved);
        Assert.That(m.Cpu.SaveState(), Is.EqualTo(saved));
        m.Cpu.Run(777);
        Assert.That(m.Cpu.SaveState(), Is.EqualTo(after));
    }

    [Test]
    public void DataWritesNextToCodeInTheSamePageKeepCodeCorrect()
    {
        var m = new TestMachine();
        const uint counter = TestMachine.CodeBase + 0x200; // same page as the code
        m.Execute(asm =>
        {
            var top = asm.CreateLabel();
            asm.mov(ecx, 1000);
            asm.Label(ref top);
            asm.inc(__dword_ptr[counter]);
            asm.dec(ecx);
            asm.jne(top);
        });
        Assert.That(m.Read32(counter), Is.EqualTo(1000));
    }

    [Test]
    public void SegmentRegistersHoldFlatDescriptorCaches()
    {
        var m = new TestMachine();
        m.Execute(asm =>
        {
            asm.mov(ax, 0x23);
            asm.mov(es, ax);
            asm.push(0x2b);
            asm.pop(fs);
        });
        Assert.That(m.Cpu.GetSegment(Sreg.Cs), Is.EqualTo(new SegmentRegister(0x08, 0, 0xFFFFFFFF, SegmentRegister.FlatCodeAttributes)));
        Assert.That(m.Cpu.GetSegment(Sreg.Ss), Is.EqualTo(new SegmentRegister(0x10, 0, 0xFFFFFFFF, SegmentRegister.FlatDataAttributes)));
        Assert.That(m.Cpu.GetSegment(Sreg.Es), Is.EqualTo(SegmentRegister.Flat(0x23, code: false)));
        Assert.That((m.Cpu.Es, m.Cpu.Fs, m.Cpu.GetSegment(Sreg.Fs).Selector), Is.EqualTo(((ushort)0x23, (ushort)0x2b, (ushort)0x2b)));
    }

    [Test]
    public void ASegmentLoadWhoseSourceIsRefusedLeavesTheSegmentUnchanged()
    {
        // Segment registers are not in the per-instruction rollback snapshot: the load must not happen at all.
        var m = new TestMachine();
        m.Slat.Unmap(0x30);
        m.Load(asm =>
        {
            asm.mov(ds, __word_ptr[0x30000]);
            asm.hlt();
        });
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.MemoryIntercept));
        Assert.That(m.Cpu.Ds, Is.EqualTo(0x10));

        m = new TestMachine();
        m.Slat.Unmap(0x30);
        m.Cpu[Gpr.Esp] = 0x30000;
        m.Load(asm =>
        {
            asm.pop(gs);
            asm.hlt();
        });
        Assert.That(m.Cpu.Run(100).Reason, Is.EqualTo(CpuExitReason.MemoryIntercept));
        Assert.That((m.Cpu.Gs, m.Cpu[Gpr.Esp]), Is.EqualTo(((ushort)0x10, 0x30000u)));
    }
}
