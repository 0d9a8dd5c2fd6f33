using System.Diagnostics;
using HybridVmm.Hardware.Cpu;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// Throughput and allocation checks. The MIPS figure is printed, never asserted:
/// <c>dotnet test tests/HybridVmm.Hardware.Tests -c Release --filter Name~Mips --logger "console;verbosity=detailed"</c>.
/// </summary>
public class PerformanceTests
{
    private const int BufferLength = 64 * 1024;

    /// <summary>Benchmark rounds; HYBRIDVMM_BENCH_ROUNDS raises it for profiling runs.</summary>
    private static int Rounds => int.TryParse(Environment.GetEnvironmentVariable("HYBRIDVMM_BENCH_ROUNDS"), out int n) ? n : 12;

    /// <summary>Bitwise CRC-32 over a buffer: the shape of code gcc -O2 emits for a checksum loop.</summary>
    private static void Crc32Kernel(Assembler asm)
    {
        var outer = asm.CreateLabel();
        var inner = asm.CreateLabel();
        var skip = asm.CreateLabel();
        asm.mov(esi, TestMachine.DataBase);
        asm.mov(ecx, BufferLength);
        asm.mov(eax, -1);
        asm.Label(ref outer);
        asm.movzx(edx, __byte_ptr[esi]);
        asm.xor(eax, edx);
        asm.mov(ebx, 8);
        asm.Label(ref inner);
        asm.shr(eax, 1);
        asm.jae(skip);
        asm.xor(eax, 0xEDB88320);
        asm.Label(ref skip);
        asm.dec(ebx);
        asm.jne(inner);
        asm.inc(esi);
        asm.dec(ecx);
        asm.jne(outer);
        asm.not(eax);
        asm.hlt();
    }

    private static TestMachine PrepareCrc()
    {
        var m = new TestMachine();
        var random = new Random(1234);
        var data = new byte[BufferLength];
        random.NextBytes(data);
        m.WriteBytes(TestMachine.DataBase, data);
        m.Load(Crc32Kernel);
        return m;
    }

    private static uint ReferenceCrc(TestMachine m)
    {
        uint crc = 0xffffffff;
        for (int i = 0; i < BufferLength; i++)
        {
            crc ^= m.Read8(TestMachine.DataBase + (uint)i);
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    [Test]
    public void Crc32KernelComputesTheReferenceChecksum()
    {
        TestMachine m = PrepareCrc();
        m.RunToHalt(100_000_000);
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(ReferenceCrc(m)));
    }

    [Test]
    public void HotLoopDoesNotAllocate()
    {
        TestMachine m = PrepareCrc();
        m.Cpu.Run(100_000); // warm up: decode cache filled
        // Tiered JIT compilation can allocate on this thread while the loop is being re-jitted (later on a loaded
        // machine: a CI run beside other work found 2,272 bytes in each of five windows), so take the best of up to
        // twenty windows, stopping at the first clean one: a per-instruction allocation would show up in every window.
        long best = long.MaxValue;
        for (int window = 0; window < 20 && best != 0; window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 20; i++)
            {
                m.Cpu.Run(10_000);
            }
            best = Math.Min(best, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.That(best, Is.Zero, "bytes allocated over 200,000 guest instructions");
    }

    /// <summary>Sieve of Eratosthenes over 64 KiB of flags: byte stores, compares and branches.</summary>
    private static void SieveKernel(Assembler asm)
    {
        const int n = 0x10000;
        var clear = asm.CreateLabel();
        var outer = asm.CreateLabel();
        var inner = asm.CreateLabel();
        var next = asm.CreateLabel();
        var count = asm.CreateLabel();
        var skip = asm.CreateLabel();
        asm.mov(edi, TestMachine.DataBase);
        asm.mov(ecx, n / 4);
        asm.mov(eax, 0x01010101);
        asm.rep.stosd();
        asm.mov(ebx, 2);
        asm.Label(ref outer);
        asm.mov(eax, ebx);
        asm.imul(eax, ebx);
        asm.cmp(eax, n);
        asm.jae(count);
        asm.cmp(__byte_ptr[ebx + TestMachine.DataBase], 0);
        asm.je(next);
        asm.Label(ref inner);
        asm.mov(__byte_ptr[eax + TestMachine.DataBase], 0);
        asm.add(eax, ebx);
        asm.cmp(eax, n);
        asm.jb(inner);
        asm.Label(ref next);
        asm.inc(ebx);
        asm.jmp(outer);
        asm.Label(ref count);
        asm.xor(eax, eax);
        asm.mov(ecx, 2);
        asm.Label(ref clear);
        asm.movzx(edx, __byte_ptr[ecx + TestMachine.DataBase]);
        asm.add(eax, edx);
        asm.inc(ecx);
        asm.cmp(ecx, n);
        asm.jb(clear);
        asm.Label(ref skip);
        asm.hlt();
    }

    [Test]
    public void SieveKernelCountsPrimesBelow65536()
    {
        var m = new TestMachine();
        m.Load(SieveKernel);
        m.RunToHalt(100_000_000);
        Assert.That(m.Cpu[Gpr.Eax], Is.EqualTo(6542));
    }

    [Explicit("Benchmark: prints guest MIPS; run in Release")]
    [TestCase(ExecutionTier.Interpreter)]
    [TestCase(ExecutionTier.Jit)]
    public void SieveMips(ExecutionTier tier)
    {
        for (int round = 0; round < Rounds; round++)
        {
            var m = new TestMachine();
            m.Load(SieveKernel);
            Measure(m, $"sieve {tier} round {round}", tier);
        }
    }

    private static void Measure(TestMachine m, string label, ExecutionTier tier)
    {
        m.Cpu.Tier = tier;
        // Wall time, and the process's CPU time: on a shared machine the second says more (other work only delays us).
        TimeSpan cpuBefore = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        CpuExit exit;
        do
        {
            exit = m.Cpu.Run(10_000_000);
        }
        while (exit.Reason == CpuExitReason.BudgetExhausted);
        sw.Stop();
        TimeSpan cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
        Assert.That(exit.Reason, Is.EqualTo(CpuExitReason.Halt));
        double mips = m.Cpu.InstructionsRetired / sw.Elapsed.TotalSeconds / 1e6;
        double cpuMips = m.Cpu.InstructionsRetired / cpu.TotalSeconds / 1e6;
        TestContext.Out.WriteLine($"{label}: {m.Cpu.InstructionsRetired:N0} instructions in {sw.Elapsed.TotalMilliseconds:F0} ms = {mips:F1} MIPS " +
            $"({cpu.TotalMilliseconds:F0} ms of CPU = {cpuMips:F1} MIPS of CPU time)");
    }

    [Explicit("Benchmark: prints guest MIPS; run in Release")]
    [TestCase(ExecutionTier.Interpreter)]
    [TestCase(ExecutionTier.Jit)]
    public void Crc32Mips(ExecutionTier tier)
    {
        for (int round = 0; round < Rounds; round++)
        {
            Measure(PrepareCrc(), $"crc32 {tier} round {round}", tier);
        }
    }
}
