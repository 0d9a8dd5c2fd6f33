using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>High-availability checkpoints are snapshots taken mid-pass, on the scheduler thread: they carry the synthetic state too.</summary>
public class EnlightenedHighAvailabilityTests
{
    [Test]
    public async Task AnEnlightenedGuestRestartedFromACheckpointFinishesItsOutputAndItsRun()
    {
        VmConfiguration config = new()
        {
            Name = "enlcon", Image = Repository.ReadGuest("enlcon"), MemoryBytes = 8u << 20, CommandLine = "synth",
            SyntheticDevices = new[] { "synthcon" }, ConsoleInput = "ping from the host\n"u8.ToArray(),
        };
        EnlightenedSnapshotTests.Run expected = EnlightenedSnapshotTests.RunUninterrupted(config);

        // The worker's debug-exit driver fails on the guest's final OUT: the VM restarts from its last checkpoint,
        // taken a few thousand instructions earlier with the channel open, and must run to the same end.
        using var machine = new TestMachine();
        VirtualMachine vm = machine.Create(config with { InjectDeviceFailure = ("debug-exit", 1) });
        var ha = new HighAvailabilityManager(machine.System, new HighAvailabilityPolicy { CheckpointEveryInstructions = 7_000, MaxRestarts = 1 });
        ha.Protect(vm);
        machine.System.Root.Start(vm);
        IReadOnlyList<HighAvailabilityRecord> records = await ha.RunAsync();

        VirtualMachine restarted = ha.Current("enlcon");
        string first = machine.Output(vm), replay = machine.Output(restarted);
        TestContext.Out.WriteLine($"replayed after the restart: {replay.Length} bytes");
        Assert.Multiple(() =>
        {
            Assert.That(records.Single().Restarts, Is.EqualTo(1));
            Assert.That(records.Single().Checkpoints, Is.GreaterThan(expected.Instructions / 7_000 - 2));
            Assert.That(restarted.Exited.Result.Reason, Is.EqualTo(StopReason.GuestExit), restarted.Exited.Result.Diagnostic);
            Assert.That(restarted.Statistics.InstructionsRetired, Is.EqualTo(expected.Instructions));
            Assert.That(first, Is.EqualTo(expected.Output), "the first run printed everything before its driver failed");
            Assert.That(expected.Output, Does.EndWith(replay), "the restart printed again exactly what followed its checkpoint");
        });
    }
}
