using System.Diagnostics;
using System.Runtime.InteropServices;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hardware.Tests.Cpu;

/// <summary>
/// The CoreMark-style CPU workload on a bare core: the sample guest <c>samples/guests/bin/cpu.elf</c> (CRC-32,
/// sieve, matrix multiply, heapsort, 64-bit arithmetic, string instructions, BCD, bit operations) loaded from its
/// ELF program headers onto an <see cref="X86Core"/> with no hypervisor around it. Port reads are answered inline
/// (LSR = THRE), CPUID with zeros, and the run ends at the write to the debug-exit port. It prints MIPS by wall clock
/// and by the thread's CPU time, which a loaded machine disturbs less (docs/performance.md).
/// </summary>
public class CpuGuestBenchmark
{
    private const int Pages = 1024; // 4 MiB, identity-mapped

    // With paging: a page directory and one page table at the top of the 4 MiB identity-map it with 4 KiB pages.
    private const uint PageDirectory = 0x3FF000, PageTable = 0x3FE000;

    /// <param name="paging">Run with CR0.PG set over an identity mapping of 4 KiB pages: every access then goes
    /// through the TLB (and a walk on a miss) before the second-level table.</param>
    [Test, Explicit("Benchmark: prints guest MIPS; run in Release")]
    public void CpuGuestMips([Values(false, true)] bool paging)
    {
        byte[] elf = File.ReadAllBytes(FindGuest("cpu.elf"));
        string? flatOutput = null;
        for (int round = 0; round <= 5; round++)
        {
            X86Core core = Boot(elf, paging);
            var wall = Stopwatch.StartNew();
            double cpu0 = ThreadCpuSeconds();
            string output = RunToDebugExit(core);
            double cpu = ThreadCpuSeconds() - cpu0;
            wall.Stop();
            double instructions = core.InstructionsRetired;
            TestContext.Out.WriteLine($"{(paging ? "paging on" : "paging off")}, {(round == 0 ? "warm-up" : $"round {round}")}: {core.InstructionsRetired:N0} instructions, " +
                $"{instructions / wall.Elapsed.TotalSeconds / 1e6:F1} MIPS wall, {instructions / cpu / 1e6:F1} MIPS thread-CPU");
            Assert.That(core.InstructionsRetired, Is.EqualTo(23_959_616), "paging changes no instruction count");
            Assert.That(output, Does.Contain("cpu: done"));
            flatOutput ??= output;
            Assert.That(output, Is.EqualTo(flatOutput));
        }
    }

    private static X86Core Boot(byte[] elf, bool paging)
    {
        var memory = new HostPhysicalMemory(Pages);
        var slat = new SecondLevelPageTable(Pages);
        for (uint page = 0; page < Pages; page++) slat.Map(page, (int)page, writable: true);
        uint entry = BitConverter.ToUInt32(elf, 0x18);
        uint phoff = BitConverter.ToUInt32(elf, 0x1c);
        int phentsize = BitConverter.ToUInt16(elf, 0x2a), phnum = BitConverter.ToUInt16(elf, 0x2c);
        for (int i = 0; i < phnum; i++)
        {
            int ph = (int)phoff + i * phentsize;
            if (BitConverter.ToUInt32(elf, ph) != 1) continue; // PT_LOAD; .bss is already zero
            uint offset = BitConverter.ToUInt32(elf, ph + 4), physical = BitConverter.ToUInt32(elf, ph + 12);
            elf.AsSpan((int)offset, (int)BitConverter.ToUInt32(elf, ph + 16)).CopyTo(memory.Bytes.Slice((int)physical));
        }
        var core = new X86Core(memory, slat);
        core.ResetToFlatProtectedMode(entry);
        core[Gpr.Eax] = 0x2BADB002; // Multiboot magic; EBX points at a zeroed multiboot_info
        core[Gpr.Ebx] = 0x9000;
        if (paging)
        {
            for (uint page = 0; page < Pages; page++)
            {
                BitConverter.TryWriteBytes(memory.Bytes.Slice((int)(PageTable + page * 4)), (page << 12) | 3);
            }
            BitConverter.TryWriteBytes(memory.Bytes.Slice((int)PageDirectory), PageTable | 3);
            core.Cr3 = PageDirectory;
            core.Cr0 |= (uint)Cr0Flags.PG;
        }
        return core;
    }

    /// <summary>Runs to the debug-exit write; returns what the guest wrote to COM1's THR.</summary>
    private static string RunToDebugExit(X86Core core)
    {
        var output = new System.Text.StringBuilder();
        while (true)
        {
            CpuExit exit = core.Run(50_000_000);
            switch (exit.Reason)
            {
                case CpuExitReason.BudgetExhausted: break;
                case CpuExitReason.IoIn: core.CompleteIoIn(exit.Port == 0x3FD ? 0x60u : 0u); break;
                case CpuExitReason.IoOut when exit.Port == 0xF4: return output.ToString();
                case CpuExitReason.IoOut:
                    if (exit.Port == 0x3F8) output.Append((char)(byte)exit.Value);
                    core.CompleteIoOut();
                    break;
                case CpuExitReason.Cpuid: core.CompleteCpuid(0, 0, 0, 0); break;
                default: Assert.Fail($"{exit}\n{core.DescribeState()}"); return "";
            }
        }
    }

    private static string FindGuest(string name)
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            string path = Path.Combine(dir.FullName, "samples", "guests", "bin", name);
            if (File.Exists(path)) return path;
        }
        Assert.Inconclusive($"{name} not found above {TestContext.CurrentContext.TestDirectory}");
        return "";
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out Timespec time);

    /// <summary>CPU time of the calling thread (Linux CLOCK_THREAD_CPUTIME_ID); falls back to the process's.</summary>
    private static double ThreadCpuSeconds()
    {
        try
        {
            if (ClockGetTime(3, out Timespec t) == 0) return t.Seconds + t.Nanoseconds / 1e9;
        }
        catch (DllNotFoundException)
        {
        }
        return Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
    }
}
