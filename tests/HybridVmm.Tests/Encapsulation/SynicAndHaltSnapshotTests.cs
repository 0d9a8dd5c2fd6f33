using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.SynIc;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>State that only exists for a moment: a SynIC message queued behind a busy slot, and a vCPU waiting in HLT.</summary>
public class SynicAndHaltSnapshotTests
{
    private const int VmBusSint = 2;

    [Test]
    public async Task AMessageQueuedBehindABusySlotIsDeliveredAfterTheRestore()
    {
        // The root answers RequestOffers with an offer and AllOffersDelivered: the second waits behind the first
        // until the guest frees the slot and writes EOM. Step through the boot until a save lands in that window.
        VmConfiguration config = new()
        {
            Name = "enlcon", Image = Repository.ReadGuest("enlcon"), MemoryBytes = 8u << 20, CommandLine = "synth",
            SyntheticDevices = new[] { "synthcon" },
        };
        EnlightenedSnapshotTests.Run expected = EnlightenedSnapshotTests.RunUninterrupted(config);

        byte[] file;
        string before;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create(config);
            long at = 0;
            do
            {
                at += 20;
                machine.System.Root.PauseAtInstruction(vm, at);
                await machine.RunAsync();
                Assert.That(vm.State, Is.EqualTo(PartitionState.Paused), "the guest ended without a message ever queued at a save point");
            }
            while (machine.System.Root.QueuedSynicMessages(vm, VmBusSint) == 0);

            VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(vm);
            SynicQueuedMessage queued = snapshot.Enlightened.VirtualProcessors[0].Synic.Queued.Single();
            Assert.That((queued.Sint, queued.MessageType), Is.EqualTo((VmBusSint, 1u)));
            TestContext.Out.WriteLine($"a message is queued at instruction {at}");
            before = machine.Output(vm);
            file = SnapshotFormat.Serialize(snapshot);
        }

        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(SnapshotFormat.TryDeserialize(file, out _)!, out VmCreationError? error)!;
            Assert.That(vm, Is.Not.Null, error?.Message);
            Assert.That(machine.System.Root.QueuedSynicMessages(vm, VmBusSint), Is.EqualTo(1));
            await machine.RunAsync();
            Assert.That(vm.Exited.Result.Reason, Is.EqualTo(StopReason.GuestExit), vm.Exited.Result.Diagnostic);
            Assert.That(before + machine.Output(vm), Is.EqualTo(expected.Output));
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(expected.Instructions));
        }
    }

    [Test]
    public async Task AVcpuSavedInHltStaysHaltedAfterTheRestore()
    {
        // STI; HLT with nothing to wake it. Were HLT forgotten, the restored guest would run on and exit with 9.
        byte[] image = FlatKernel.Build(a =>
        {
            a.sti();
            a.hlt();
            a.mov(eax, 9);
            a.@out(0xF4, eax);
        });
        byte[] file;
        using (var machine = new TestMachine())
        {
            // Without the PIT: its IRQ 0 is unmasked at power-on, as SeaBIOS leaves it, and would wake the HLT at vector 8.
            VirtualMachine vm = machine.Create(new VmConfiguration
            {
                Name = "hlt", Image = image, MemoryBytes = 2u << 20, Devices = VmConfiguration.KnownDevices.Where(d => d != "pit").ToArray(),
            });
            machine.System.Root.Start(vm);
            await machine.System.RunUntilIdleAsync(stopWhen: () => machine.System.Root.VirtualProcessorState(vm) == VpState.Halted);
            machine.System.Root.Pause(vm);
            VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(vm);
            Assert.That(snapshot.Enlightened.VirtualProcessors[0].Halted, Is.True);
            file = SnapshotFormat.Serialize(snapshot);
        }

        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(SnapshotFormat.TryDeserialize(file, out _)!, out _)!;
            await machine.RunAsync();
            PartitionExit exit = await vm.Exited;
            Assert.That(exit.Reason, Is.EqualTo(StopReason.Halted), "the restored vCPU waits in HLT, as it did");
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(2));
        }
    }
}
