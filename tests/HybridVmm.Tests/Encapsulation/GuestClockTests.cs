using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// A restored VM's timers continue on the clock they were saved with. The clock guest counts loop iterations between
/// PIT and local APIC timer interrupts, so any shift of a device's or the APIC's deadline against the guest's
/// instructions changes a count. The reference is the same guest run uninterrupted: encapsulation's promise.
/// </summary>
public class GuestClockTests
{
    private static readonly byte[] Clock = Repository.ReadGuest("clock");

    [TestCase(300_000)]   // while it counts between the PIT's interrupts
    [TestCase(1_000_000)] // while it counts between the APIC timer's
    public void SavedInOneProcessAndRestoredInAnotherItsTimersKeepTheirDistanceFromItsInstructions(long saveAt)
    {
        CliProcess.Result uninterrupted = CliProcess.Run("run", Repository.GuestElf("clock"));
        Assert.That(uninterrupted.ExitCode, Is.Zero, uninterrupted.Stderr);
        Assert.That(uninterrupted.Text, Does.Match(@"^pit irq 0, divisor 120:( [1-9][0-9]*){8}\napic timer, initial count 100000:( [1-9][0-9]*){8}\nticks [0-9]+\n$"));

        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        try
        {
            CliProcess.Result saved = CliProcess.Run("run", Repository.GuestElf("clock"), "--save-at", saveAt.ToString(), "--save-to", path);
            Assert.That(saved.Stderr, Does.Contain($"saved 'clock' at instruction {saveAt}"));
            CliProcess.Result restored = CliProcess.Run("restore", path);
            Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
            Assert.That(saved.Text + restored.Text, Is.EqualTo(uninterrupted.Text));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public async Task RestoredOnAMachineWhoseClockIsFurtherOnItsTimersStillKeepTheirDistance()
    {
        (string expected, PartitionExit _, VirtualMachine _, TestMachine first) = await TestMachine.RunOneAsync(Clock);
        first.Dispose();

        byte[] file;
        string before;
        using (var machine = new TestMachine())
        {
            VirtualMachine vm = machine.Create("clock", Clock);
            machine.System.Root.PauseAtInstruction(vm, 300_000);
            await machine.RunAsync();
            Assert.That(vm.State, Is.EqualTo(PartitionState.Paused));
            before = machine.Output(vm);
            file = SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm));
        }

        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(snapshot, Is.Not.Null, error);
        using (var machine = new TestMachine())
        {
            // Another guest runs first, so this machine's clock is well past the one the snapshot was taken on.
            VirtualMachine other = machine.Create("cpu", Repository.ReadGuest("cpu"), instructionLimit: 2_000_000);
            await machine.RunAsync();
            Assert.That(other.Statistics.InstructionsRetired, Is.EqualTo(2_000_000));
            Assert.That(machine.System.Kernel.Clock.Ticks, Is.GreaterThan(snapshot.GuestClock!.Value), "this machine's clock is past the snapshot's");

            VirtualMachine vm = machine.System.Root.RestoreVm(snapshot, out VmCreationError? creationError)!;
            Assert.That(vm, Is.Not.Null, creationError?.Message);
            await machine.RunAsync();
            Assert.That((await vm.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(before + machine.Output(vm), Is.EqualTo(expected));
        }
    }
}
