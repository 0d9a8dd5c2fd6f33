using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.Memory;
using Iced.Intel;
using NUnit.Framework;

namespace HybridVmm.Testing.Cpu;

/// <summary>
/// A small machine for CPU tests: 1 MiB of guest memory identity-mapped (guest page n = host frame n),
/// code assembled with Iced's <see cref="Assembler"/> at <see cref="CodeBase"/>, stack below <see cref="StackTop"/>.
/// No kernel and no partition: an <see cref="X86Core"/> on its memory, as the hardware tests and the
/// differential fuzzers need it.
/// </summary>
public sealed class TestMachine
{
    public const uint CodeBase = 0x1000;
    public const uint DataBase = 0x20000;
    public const uint StackTop = 0x80000;
    public const int Pages = 256;

    /// <param name="isWritablePage">Given a page's first address, whether the second-level table maps it writable
    /// (every page when null). The host writes through <see cref="WriteBytes"/> regardless.</param>
    public TestMachine(Func<uint, bool>? isWritablePage = null)
    {
        Memory = new HostPhysicalMemory(Pages);
        Slat = new SecondLevelPageTable(Pages);
        for (uint page = 0; page < Pages; page++)
        {
            Slat.Map(page, (int)page, writable: isWritablePage?.Invoke(page << 12) ?? true);
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
        byte[] code = GuestCode.Assemble(build, address);
        WriteBytes(address, code);
        Cpu.Eip = address;
        return code;
    }

    /// <summary>Writes as the host (the loader), past a read-only second-level mapping, and drops decoded code there.</summary>
    public void WriteBytes(uint address, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Memory.Bytes.Slice((int)address));
        Cpu.InvalidateCode(address, bytes.Length);
    }

    public uint Read32(uint address) => BitConverter.ToUInt32(Memory.Bytes.Slice((int)address, 4));
    public byte Read8(uint address) => Memory.Bytes[(int)address];
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
