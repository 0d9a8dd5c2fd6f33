using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// A snapshot taken mid-pass (as high availability takes its checkpoints) can catch a guest's HvSignalEvent that the
/// kernel has queued for the root but not yet handed over: the request is saved and served after the restore.
/// </summary>
public class PendingRootRequestSnapshotTests
{
    [Test]
    public async Task ARequestQueuedForTheRootAtTheSaveIsServedAfterTheRestore()
    {
        VmConfiguration config = new()
        {
            Name = "enlcon", Image = Repository.ReadGuest("enlcon"), MemoryBytes = 8u << 20, CommandLine = "synth",
            SyntheticDevices = new[] { "synthcon" },
        };
        EnlightenedSnapshotTests.Run expected = EnlightenedSnapshotTests.RunUninterrupted(config);

        VmSnapshot? caught = null;
        string before = "";
        EnlightenedSnapshotTests.Run source;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create(config);
            long messages = 0;
            machine.System.Root.BreakpointReached += partition =>
            {
                // On the scheduler thread, before the pass barrier. Step one instruction at a time; when the guest has
                // just made a request (the channel-message count moved), save and look for a queued HvSignalEvent.
                long now = vm.Statistics.ChannelMessages;
                if (now != messages)
                {
                    messages = now;
                    VmSnapshot snapshot = machine.System.Root.CaptureSnapshot(vm);
                    if (snapshot.Enlightened.PendingRequests.Any(r => r.Kind == Hypervisor.VmBus.VmBusRequestKind.Signal))
                    {
                        caught = snapshot;
                        before = machine.Output(vm);
                        machine.System.Root.Start(vm); // the source goes on: the root serves the request at this pass's barrier
                        return;
                    }
                }

                machine.System.Root.PauseAtInstruction(vm, machine.System.Root.Registers(vm).InstructionsRetired + 1);
                machine.System.Root.Start(vm);
            };
            machine.System.Root.PauseAtInstruction(vm, 1);
            await machine.RunAsync();
            source = new EnlightenedSnapshotTests.Run(machine.Output(vm), vm.Exited.Result, vm.Statistics.InstructionsRetired);
        }

        Assert.That(caught, Is.Not.Null, "no save point caught a request queued for the root");
        PendingRootRequest pending = caught!.Enlightened.PendingRequests[0];
        TestContext.Out.WriteLine($"caught {pending.Kind} on connection 0x{pending.ConnectionId:x} at instruction {caught.Cpu.InstructionsRetired}; the source ended at {source.Instructions}, an uninterrupted run at {expected.Instructions}");
        byte[] file = SnapshotFormat.Serialize(caught);
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.System.Root.RestoreVm(SnapshotFormat.TryDeserialize(file, out _)!, out VmCreationError? error)!;
            Assert.That(vm, Is.Not.Null, error?.Message);
            await machine.RunAsync();
            Assert.That(vm.Exited.Result.Reason, Is.EqualTo(StopReason.GuestExit), vm.Exited.Result.Diagnostic);
            Assert.That(before + machine.Output(vm), Is.EqualTo(expected.Output));
            Assert.That(source.Output, Is.EqualTo(expected.Output));

            // Pausing mid-pass moved the barrier: the root served the signal before the guest reached its HLT, so the
            // source itself ran a few instructions fewer than an uninterrupted run. The restored VM does as the source did.
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(source.Instructions));
        }
    }
}
