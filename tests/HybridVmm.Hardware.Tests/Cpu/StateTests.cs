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
}
