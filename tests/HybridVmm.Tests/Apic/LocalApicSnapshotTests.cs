using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using static HybridVmm.Tests.Apic.ApicGuest;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Apic;

/// <summary>
/// The local APIC travels in snapshots (chunk "apic.vp0"): a guest saved while its periodic timer runs, with a TPR and
/// an interrupt in service, goes on after the restore exactly as it would have without the stop. A snapshot without
/// the chunk (taken before the APIC existed) restores the power-on APIC.
/// </summary>
public class LocalApicSnapshotTests
{
    private static readonly byte[] Guest = Build(a =>
    {
        Write(a, Tpr, 0x10);
        Write(a, IcrLow, 0x0004_0070);                          // 0x70 stays in service: its stub writes no EOI
        a.sti(); a.nop(); a.cli();
        Write(a, Divide, 0x0);                                  // divide by 2
        Write(a, LvtTimer, 0x40 | (1 << 17));                   // periodic; 0x40 is below 0x70: held until the EOI
        Write(a, InitialCount, 30_000);
        var spin = a.CreateLabel(); a.mov(ecx, 40_000); a.Label(ref spin); a.dec(ecx); a.jnz(spin);
        Save(a, Irr + 0x20, 0);                                 // 0x40 waits
        Write(a, Eoi, 0);                                       // 0x70 leaves ISR
        var wait = a.CreateLabel(); a.Label(ref wait);
        a.sti(); a.hlt(); a.cli();
        a.cmp(__dword_ptr[LogCount], 6); a.jb(wait);
        Save(a, Tpr, 1); Save(a, Svr, 2); Save(a, CurrentCount, 3); Save(a, Isr + 0x30, 4);
        Exit(a);
    }, [0x40, 0x70], eoiVectors: [0x40]);

    private sealed record Outcome(PartitionExit Exit, byte[] Memory, long Instructions);

    private static Outcome Finish(TestMachine machine, VirtualMachine vm)
    {
        machine.RunAsync().GetAwaiter().GetResult();
        PartitionExit exit = vm.Exited.Result;
        byte[] memory = new byte[0x2000];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Results, memory);
        return new Outcome(exit, memory, vm.Statistics.InstructionsRetired);
    }

    private static Outcome Uninterrupted()
    {
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration { Name = "apic", Image = Guest, MemoryBytes = 4u << 20, InstructionLimit = 10_000_000 });
        return Finish(machine, vm);
    }

    private static Outcome SavedAndRestored(long saveAt, bool withoutApicChunk = false)
    {
        byte[] file;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create(new VmConfiguration { Name = "apic", Image = Guest, MemoryBytes = 4u << 20, InstructionLimit = 10_000_000 });
            machine.System.Root.PauseAtInstruction(vm, saveAt);
            machine.RunAsync().GetAwaiter().GetResult();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));
            VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(vm);
            if (withoutApicChunk)
            {
                snapshot = snapshot with
                {
                    Enlightened = snapshot.Enlightened with
                    {
                        VirtualProcessors = [.. snapshot.Enlightened.VirtualProcessors.Select(v => v with { Apic = null })],
                    },
                };
            }

            file = SnapshotFormat.Serialize(snapshot);
        }

        VmSnapshot restored = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(restored, Is.Not.Null, error);
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(restored, out VmCreationError? creationError)!;
            Assert.That(vm, Is.Not.Null, creationError?.Message);
            return Finish(machine, vm);
        }
    }

    [TestCase(60)]
    [TestCase(70_050)]
    public void AGuestRestoredWhileItsTimerRunsGoesOnAsIfNeverStopped(long saveAt)
    {
        Outcome reference = Uninterrupted();
        Outcome restored = SavedAndRestored(saveAt);
        Assert.That(reference.Exit.Reason, Is.EqualTo(StopReason.GuestExit), reference.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(BitConverter.ToUInt32(reference.Memory, 0), Is.EqualTo(1u), "0x40 waited behind 0x70 in service");
            Assert.That(BitConverter.ToUInt32(reference.Memory, 4), Is.EqualTo(0x10u));
            Assert.That(restored.Exit, Is.EqualTo(reference.Exit));
            Assert.That(restored.Memory, Is.EqualTo(reference.Memory), "results, log and the handlers' PPRs");
            Assert.That(restored.Instructions, Is.EqualTo(reference.Instructions));
        });
    }

    [Test]
    public void ASnapshotWithoutTheApicChunkRestoresThePowerOnApic()
    {
        // Saved before anything touched the APIC: with the power-on APIC the run is the uninterrupted one.
        Outcome reference = Uninterrupted();
        Outcome restored = SavedAndRestored(5, withoutApicChunk: true);
        Assert.That(restored.Memory, Is.EqualTo(reference.Memory));
        Assert.That(restored.Instructions, Is.EqualTo(reference.Instructions));
    }
}
