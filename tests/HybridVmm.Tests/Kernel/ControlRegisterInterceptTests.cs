using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Kernel;

/// <summary>
/// The kernel owns the CR0 and CR4 bits its combined TLB depends on (ControlRegisterPolicy): a guest write that changes
/// one exits to the kernel and costs what any exit the kernel serves costs, in virtual time; a write of the guest's own
/// bits (CR0.TS here) costs nothing. kvm-unit-tests' vmexit_cr0_wp and vmexit_cr4_pge time these exits.
/// </summary>
public class ControlRegisterInterceptTests
{
    [Test]
    public async Task AWriteOfAKernelOwnedBitCostsAnExitAndAWriteOfTheGuestsOwnBitDoesNot()
    {
        const int Loops = 20_000;
        const uint Results = 0x20000;
        const int Wp = 1 << 16, Ts = 1 << 3, Pge = 1 << 7;
        byte[] image = FlatKernel.Build(a =>
        {
            Label top = a.CreateLabel();
            a.cli();
            a.mov(ebx, cr0);
            a.mov(ecx, cr4);
            a.rdtsc(); a.mov(edi, eax);
            a.mov(esi, Loops);
            a.Label(ref top);
            a.mov(eax, ebx); a.xor(eax, Wp); a.mov(cr0, eax); a.mov(cr0, ebx);   // WP set, then cleared: two exits
            a.mov(eax, ebx); a.xor(eax, Ts); a.mov(cr0, eax); a.mov(cr0, ebx);   // TS: none
            a.mov(eax, ecx); a.xor(eax, Pge); a.mov(cr4, eax); a.mov(cr4, ecx);  // PGE: two exits
            a.dec(esi); a.jnz(top);
            a.rdtsc(); a.sub(eax, edi);
            a.mov(__dword_ptr[Results], eax);
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("crs", image);
        await machine.RunAsync();
        PartitionExit exit = await vm.Exited;
        Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
        byte[] delta = new byte[4];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Results, delta);

        Assert.That(vm.Statistics.InterceptsByKind.GetValueOrDefault("cr-write"), Is.EqualTo(4L * Loops), "two WP and two PGE writes a loop");
        // The first RDTSC, MOV EDI and MOV ESI; then 14 instructions a loop and four exits of 1,000 ticks
        // (SyntheticExitCostTicks, as a CPUID's); and the PIT's device timers the root served meanwhile.
        long timers = vm.Statistics.InterceptsByKind.GetValueOrDefault("device-timer");
        Assert.That(BitConverter.ToUInt32(delta), Is.EqualTo(3 + (Loops * (14 + (4 * 1_000))) + (timers * machine.System.Kernel.Options.InterceptCostTicks)));
        Assert.That(machine.TraceLines.Count(l => l.Contains("cr-write cr0=", StringComparison.Ordinal)), Is.EqualTo(2 * Loops));
        Assert.That(machine.TraceLines, Has.Some.Contains("cr-write cr4=0x00000080 (was 0x00000000)"));
    }
}
