using System.Buffers.Binary;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Enlightened;

/// <summary>
/// HV_X64_MSR_TSC_FREQUENCY (0x40000022) and HV_X64_MSR_APIC_FREQUENCY (0x40000023), read only, announced by
/// AccessFrequencyRegs (CPUID 0x40000003 EAX bit 11) and FrequencyMsrsAvailable (EDX bit 8) (TLFS 2.4.4). What they
/// report must be what the guest observes: the TSC read around a one-shot APIC timer of N input clocks (divide by 1)
/// advances by N × TSC frequency / APIC frequency, to within the polling loop's step.
/// </summary>
public class FrequencyMsrTests
{
    private const uint Log = 0x21000, Apic = 0xFEE00000;
    private const int Count = 2_000_000;

    private static void Store64(Assembler a, uint at)
    {
        a.mov(__dword_ptr[at], eax);
        a.mov(__dword_ptr[at + 4], edx);
    }

    [Test]
    public async Task TheFrequencyMsrsReportTheRatesTheGuestObservesAndRefuseWrites()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            Label poll = a.CreateLabel();
            a.mov(eax, 0x40000003); a.cpuid();
            a.mov(__dword_ptr[Log], eax); a.mov(__dword_ptr[Log + 4], edx);
            a.mov(ecx, HvMsr.TscFrequency); a.rdmsr(); Store64(a, Log + 8);
            a.mov(ecx, HvMsr.ApicFrequency); a.rdmsr(); Store64(a, Log + 16);
            a.mov(__dword_ptr[Apic + 0xF0], 0x1FF);       // software-enabled
            a.mov(__dword_ptr[Apic + 0x3E0], 0xB);        // divide by 1
            a.mov(__dword_ptr[Apic + 0x320], 0x10040);    // one-shot, masked
            a.rdtsc(); Store64(a, Log + 24);
            a.mov(__dword_ptr[Apic + 0x380], Count);      // the timer starts
            a.Label(ref poll);
            a.cmp(__dword_ptr[Apic + 0x390], 0);
            a.jne(poll);
            a.rdtsc(); Store64(a, Log + 32);
            a.mov(ecx, HvMsr.TscFrequency); a.xor(eax, eax); a.xor(edx, edx);
            a.wrmsr();                                    // read only: #GP, and with no IDT the guest stops on it
            a.xor(eax, eax); a.@out(0xF4, eax);
        });
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("freq", image);
        await machine.RunAsync();
        PartitionExit exit = await vm.Exited;
        byte[] log = new byte[40];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Log, log);
        uint features = BinaryPrimitives.ReadUInt32LittleEndian(log), availability = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(4));
        ulong tscHz = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(8)), apicHz = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(16));
        ulong before = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(24)), after = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(32));
        Assert.Multiple(() =>
        {
            Assert.That(features & (1u << 11), Is.Not.Zero, "CPUID 0x40000003 EAX bit 11: AccessFrequencyRegs");
            Assert.That(availability & (1u << 8), Is.Not.Zero, "CPUID 0x40000003 EDX bit 8: FrequencyMsrsAvailable");
            Assert.That(tscHz, Is.GreaterThan(0UL));
            Assert.That(apicHz, Is.GreaterThan(0UL));
            // The timer starts at the write, a few instructions after the first RDTSC. Each poll is an APIC access the
            // kernel serves (1,000 ticks) and two instructions: the read that sees 0 comes at most one such step after
            // the timer's end, and its own 1,000 ticks land before the second RDTSC.
            double expected = Count * (double)tscHz / apicHz;
            Assert.That((double)(after - before), Is.InRange(expected, expected + 2_010), $"TSC {tscHz} Hz, APIC {apicHz} Hz");
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault), "the write faulted");
            Assert.That(exit.Diagnostic, Does.Contain("#GP"));
            Assert.That(machine.TraceLines, Has.Some.Contains("wrmsr HV_X64_MSR_TSC_FREQUENCY (0x40000022) value=0x0000000000000000 -> #GP"));
        });
    }
}
