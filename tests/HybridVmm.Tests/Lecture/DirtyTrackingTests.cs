using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Lecture;

public class DirtyTrackingTests
{
    [Test]
    public async Task WritesAreLoggedPerPageThroughWriteProtectionAndLoggingStartsOverAfterEachCollection()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create("writer", FlatKernel.Build(a =>
        {
            a.mov(__dword_ptr[0x200000], eax);   // page 0x200
            a.mov(__dword_ptr[0x200800], eax);   // same page
            a.mov(__dword_ptr[0x203FFE], eax);   // crosses into page 0x204
            a.nop();
            a.mov(__dword_ptr[0x300000], eax);   // page 0x300, after the second collection starts
            a.hlt();
        }));
        machine.System.Root.PauseAtInstruction(vm, 1);
        await machine.RunAsync();
        machine.System.Root.StartDirtyTracking(vm);

        machine.System.Root.PauseAtInstruction(vm, 4);
        machine.System.Root.Start(vm);
        await machine.System.RunUntilIdleAsync();
        Assert.That(machine.System.Root.CollectDirtyPages(vm), Is.EqualTo(new uint[] { 0x200, 0x203, 0x204 }));

        machine.System.Root.Start(vm);
        await machine.System.RunUntilIdleAsync();
        Assert.That(machine.System.Root.CollectDirtyPages(vm), Is.EqualTo(new uint[] { 0x300 }));
        Assert.That(vm.Statistics.InterceptsByKind["dirty-log"], Is.EqualTo(4));
    }
}
