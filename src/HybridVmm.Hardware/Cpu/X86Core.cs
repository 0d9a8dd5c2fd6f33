using HybridVmm.Hardware.Memory;

namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// CONTRACT STUB — the CPU helper replaces the body. Public surface used by the hypervisor:
/// one x86 logical processor executing 32-bit protected-mode code decoded by Iced.
/// </summary>
public sealed partial class X86Core
{
    public X86Core(HostPhysicalMemory memory, SecondLevelPageTable slat)
    {
        Memory = memory;
        Slat = slat;
    }

    public HostPhysicalMemory Memory { get; }
    public SecondLevelPageTable Slat { get; }

    public uint Eip { get; set; }
    /// <summary>EFLAGS fully materialised (bit 1 always set).</summary>
    public uint Eflags { get; set; } = 2;
    public uint Cr0 { get; set; }

    public uint this[Gpr r] { get => 0; set { } }

    /// <summary>Instructions retired since reset (virtual time for this core; RDTSC derives from it).</summary>
    public long InstructionsRetired { get; }

    /// <summary>Sets the flat 4 GiB protected-mode state Multiboot requires (CS/DS/ES/FS/GS/SS flat, CR0.PE=1, IF=0).</summary>
    public void ResetToFlatProtectedMode(uint eip) => throw new NotImplementedException();

    /// <summary>Runs until an exit or until <paramref name="maxInstructions"/> have retired.</summary>
    public CpuExit Run(long maxInstructions) => throw new NotImplementedException();

    /// <summary>Completes a pending IN/INS with the value read from the port, retiring the instruction (or one REP iteration).</summary>
    public void CompleteIoIn(uint value) => throw new NotImplementedException();

    /// <summary>Completes a pending OUT/OUTS, retiring the instruction (or one REP iteration).</summary>
    public void CompleteIoOut() => throw new NotImplementedException();

    /// <summary>Completes a pending CPUID with the values the hypervisor chose.</summary>
    public void CompleteCpuid(uint eax, uint ebx, uint ecx, uint edx) => throw new NotImplementedException();

    /// <summary>Drops cached decoded instructions for a guest-physical range written by something other than this core.</summary>
    public void InvalidateCode(uint guestPhysicalAddress, int length) => throw new NotImplementedException();

    /// <summary>A multi-line fault diagnostic: EIP, the instruction bytes, Iced's disassembly and all registers.</summary>
    public string DescribeState() => throw new NotImplementedException();
}
