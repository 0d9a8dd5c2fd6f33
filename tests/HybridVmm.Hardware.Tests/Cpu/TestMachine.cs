using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.Memory;
using Iced.Intel;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// A small machine for CPU tests: 1 MiB of guest memory identity-mapped (guest page n = host frame n),
/// code assembled with Iced's <see cref="Assembler"/> at <see cref="CodeBase"/>, stack below <see cref="StackTop"/>.
/// </summary>
internal sealed class TestMachine
{
    public const uint CodeBase = 0x1000;
    public const uint DataBase = 0x20000;
    public const uint StackTop = 0x80000;
    public const int Pages = 256;

    public TestMachine()
    {
        Memory = new HostPhysicalMemory(Pages);
        Slat = new SecondLevelPageTable(Pages);
        for (uint page = 0; page < Pages; page++)
        {
            Slat.Map(page, (int)page, writable: true);
        }
        Cpu = new X86Core(Memory, Slat);
        Cpu.ResetToFlatProtectedMode(CodeBase);
        Cpu[Gpr.Esp] = StackTop;
    }

    public HostPhysicalMemory Memory { get; }
    public SecondLevelPageTable Slat { get; }
    public X86Core Cpu { get; }

    /// <summary>Assembles <paramref name="build"/> at <paramref name="address"/>, loads it and points EIP at it.</summary>
    public byte[] Load(Action<Assembler> build, uint address = CodeBase)
    {
        var asm = new Assembler(32);
        build(asm);
        var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), address);
        byte[] code = stream.ToArray();
        WriteBytes(address, code);
        Cpu.Eip = address;
        return code;
    }

    public void WriteBytes(uint address, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Memory.Bytes.AsSpan((int)address));
        Cpu.InvalidateCode(address, bytes.Length);
    }

    public uint Read32(uint address) => BitConverter.ToUInt32(Memory.Bytes, (int)address);
    public byte Read8(uint address) => Memory.Bytes[address];
    public void Write32(uint address, uint value) => WriteBytes(address, BitConverter.GetBytes(value));

    /// <summary>Runs until HLT; any other exit fails the test with the core's diagnostic.</summary>
    public void RunToHalt(long budget = 10_000_000)
    {
        CpuExit exit = Cpu.Run(budget);
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Halt), () => $"{exit}\n{Cpu.DescribeState()}");
    }

    /// <summary>Runs a program built from <paramref name="build"/> followed by HLT.</summary>
    public void Execute(Action<Assembler> build)
    {
        Load(asm =>
        {
            build(asm);
            asm.hlt();
        });
        RunToHalt();
    }

    public uint Flags(uint mask = 0x8d5) => Cpu.Eflags & mask;
}

/// <summary>Status flag bits, short names for expectation tables.</summary>
internal static class F
{
    public const uint CF = 0x001, PF = 0x004, AF = 0x010, ZF = 0x040, SF = 0x080, DF = 0x400, OF = 0x800;
    public const uint Status = CF | PF | AF | ZF | SF | OF;
}
