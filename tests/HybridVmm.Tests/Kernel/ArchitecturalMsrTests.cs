using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Kernel;

/// <summary>
/// The architectural MSRs the kernel serves beside the synthetic ones: IA32_TIME_STAMP_COUNTER (SDM Vol. 3B, 18.17:
/// WRMSR sets the counter, which RDTSC then continues from) and IA32_BIOS_SIGN_ID (Vol. 3A, 10.11.7: the
/// microcode-update signature, written 0 before CPUID and read after; Linux 6.1 does this in early_init_intel).
/// </summary>
public class ArchitecturalMsrTests
{
    private const uint Results = 0x20000;
    private const ulong WrmsrExitCost = 1_000; // HypervisorOptions.SyntheticExitCostTicks: any exit the kernel serves itself

    [Test]
    public async Task WritingTheTscMsrSetsTheCounterThatRdtscAndRdmsrContinueFrom()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(ecx, 0x10); a.mov(eax, 0x00000000); a.mov(edx, 0x00000100); a.wrmsr(); // TSC = 2^40
            a.rdtsc();
            a.mov(__dword_ptr[Results], eax); a.mov(__dword_ptr[Results + 4], edx);
            a.mov(ecx, 0x10); a.rdmsr();
            a.mov(__dword_ptr[Results + 8], eax); a.mov(__dword_ptr[Results + 12], edx);
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        (_, PartitionExit exit, HostOS.Vm.VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            ulong rdtsc = Read64(machine, vm, Results), rdmsr = Read64(machine, vm, Results + 8);
            Assert.Multiple(() =>
            {
                // The TSC counts the partition's virtual time: the WRMSR's exit costs what any exit the kernel serves
                // itself costs (HypervisorOptions.SyntheticExitCostTicks, 1,000 ticks), the WRMSR included.
                Assert.That(rdtsc, Is.EqualTo((1UL << 40) + WrmsrExitCost), "RDTSC right after the WRMSR: the WRMSR's exit since");
                Assert.That(rdmsr, Is.EqualTo(rdtsc + 4), "RDMSR reads what RDTSC would there: RDTSC and three MOVs retired since");
            });
        }
    }

    /// <summary>
    /// CPUID exits unconditionally under VMX (SDM Vol. 3C, 26.1.2) and the kernel answers it: its exit costs what any
    /// exit the kernel serves costs, as kvm-unit-tests' vmexit_cpuid measures on KVM (about a thousand cycles there).
    /// </summary>
    [Test]
    public async Task ACpuidExitCostsWhatAnyExitTheKernelServesCosts()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.rdtsc(); a.mov(esi, eax);
            a.mov(eax, 1); a.cpuid();
            a.rdtsc(); a.sub(eax, esi);
            a.mov(__dword_ptr[Results], eax);
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        (_, PartitionExit exit, HostOS.Vm.VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            // The first RDTSC and the two MOVs retired since it; the CPUID retires in its exit and costs that exit's ticks.
            Assert.That(Read64(machine, vm, Results) & 0xFFFF_FFFF, Is.EqualTo(3 + WrmsrExitCost));
        }
    }

    /// <summary>
    /// IA32_EFER exists because CPUID reports NX (SDM Vol. 4, table 2-2): NXE (bit 11) reads back what was written, and
    /// a bit for a feature CPUID does not report (LME, bit 8: no long mode) is #GP(0).
    /// </summary>
    [Test]
    public async Task EferTakesNxeAndRefusesLongModeEnable()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(ecx, 0xC0000080); a.mov(eax, 0x800); a.xor(edx, edx); a.wrmsr();
            a.rdmsr();
            a.mov(__dword_ptr[Results], eax); a.mov(__dword_ptr[Results + 4], edx);
            a.mov(eax, 0x900); a.wrmsr(); // LME with NXE
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        (_, PartitionExit exit, HostOS.Vm.VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(Read64(machine, vm, Results), Is.EqualTo(0x800UL));
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(exit.Diagnostic, Does.StartWith("guest fault: #GP"));
        }
    }

    [Test]
    public async Task TheMicrocodeSignatureTakesAWriteAndReadsRevisionZero()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(ecx, 0x8B); a.xor(eax, eax); a.xor(edx, edx); a.wrmsr();
            a.mov(eax, 1); a.cpuid();
            a.mov(ecx, 0x8B); a.mov(eax, 0xFFFF); a.mov(edx, 0xFFFF); a.rdmsr();
            a.mov(__dword_ptr[Results], eax); a.mov(__dword_ptr[Results + 4], edx);
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        (_, PartitionExit exit, HostOS.Vm.VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Assert.That(Read64(machine, vm, Results), Is.Zero);
        }
    }

    /// <summary>
    /// IA32_SYSENTER_CS/ESP/EIP (0x174-0x176) hold what WRMSR wrote, for SYSENTER and SYSEXIT to use: CS keeps its low
    /// 16 bits and ESP and EIP their low 32, as QEMU's i386 target keeps them. The round trip through SYSENTER itself is
    /// in the rings sample guest, compared with QEMU.
    /// </summary>
    [Test]
    public async Task TheSysenterMsrsHoldWhatWasWritten()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(ecx, 0x174); a.mov(eax, 0xABCD0008); a.mov(edx, 0x1234); a.wrmsr();
            a.mov(ecx, 0x175); a.mov(eax, 0x00C0FFEE); a.mov(edx, 0x5678); a.wrmsr();
            a.mov(ecx, 0x176); a.mov(eax, 0x00100123); a.xor(edx, edx); a.wrmsr();
            for (uint i = 0; i < 3; i++)
            {
                a.mov(ecx, 0x174 + i); a.rdmsr();
                a.mov(__dword_ptr[Results + 8 * i], eax); a.mov(__dword_ptr[Results + 8 * i + 4], edx);
            }
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        (_, PartitionExit exit, HostOS.Vm.VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Assert.That(new[] { Read64(machine, vm, Results), Read64(machine, vm, Results + 8), Read64(machine, vm, Results + 16) },
                Is.EqualTo(new ulong[] { 0x0008, 0x00C0FFEE, 0x00100123 }));
        }
    }

    /// <summary>IA32_TSC_AUX (0xC0000103) holds 32 bits for RDTSCP; a write with bits 63:32 set is #GP (SDM Vol. 4, table 2-2).</summary>
    [Test]
    public async Task TscAuxFeedsRdtscpAndRefusesItsReservedHalf()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(ecx, 0xC0000103); a.mov(eax, 0xCAFE); a.xor(edx, edx); a.wrmsr();
            a.rdtscp(); a.mov(__dword_ptr[Results], ecx);
            a.mov(ecx, 0xC0000103); a.mov(edx, 1); a.wrmsr(); // #GP: no IDT, so the guest stops on it
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        (_, PartitionExit exit, HostOS.Vm.VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault), exit.Diagnostic);
            Assert.That(exit.Diagnostic, Does.Contain("#GP"));
            Assert.That(Read64(machine, vm, Results) & 0xFFFF_FFFF, Is.EqualTo(0xCAFEUL));
        }
    }

    private static ulong Read64(TestMachine machine, HostOS.Vm.VirtualMachine vm, uint address)
    {
        byte[] bytes = new byte[8];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, address, bytes);
        return BitConverter.ToUInt64(bytes);
    }
}
