using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Kernel;

public class TripleFaultTests
{
    /// <summary>Loads an IDT whose gates are all absent, then divides by zero: #DE, #GP and #DF all fail.</summary>
    private static byte[] TripleFaulter => FlatKernel.Build(a =>
    {
        a.mov(__dword_ptr[0x8000], 0x07FF0000);   // limit 0x7FF at 0x8002, base 0x20000 at 0x8004
        a.mov(__dword_ptr[0x8004], 0x20000);
        a.lidt(__[0x8002]);
        a.xor(ecx, ecx);
        a.div(ecx);
        a.mov(eax, 0); a.@out(0xF4, eax);
    });

    [Test]
    public async Task AGuestWithNoUsableHandlerTripleFaultsAndResetsAloneWithADiagnostic()
    {
        using var machine = new TestMachine();
        VirtualMachine bad = machine.Create("bad", TripleFaulter);
        VirtualMachine hello = machine.Create("hello", Repository.ReadGuest("hello"));
        await machine.RunAsync();
        PartitionExit badExit = await bad.Exited;
        Assert.Multiple(async () =>
        {
            // A PC resets on a triple fault (the chipset answers the shutdown cycle), as Hyper-V and QEMU reset the VM.
            Assert.That(badExit.Reason, Is.EqualTo(StopReason.Reset));
            Assert.That(badExit.Diagnostic, Does.StartWith("triple fault: #DE"));
            Assert.That(bad.Statistics.InterceptsByKind.GetValueOrDefault("triple-fault"), Is.EqualTo(1));
            Assert.That((await hello.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(machine.TraceLines, Has.Some.Contains("Fault     triple fault: #DE (vector 0)"));
            Assert.That(machine.TraceLines, Has.Some.Contains("Lifecycle stopped reset triple-fault"));
        });
    }

    [Test]
    public async Task AnUnknownMsrRaisesGeneralProtection()
    {
        byte[] image = FlatKernel.Build(a => { a.mov(ecx, 0x12345678); a.rdmsr(); a.mov(eax, 0); a.@out(0xF4, eax); });
        (_, PartitionExit exit, _, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(exit.Diagnostic, Does.StartWith("guest fault: #GP"));
        }
    }
}
