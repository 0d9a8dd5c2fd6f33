using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Samples.Lecture;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Kernel;

/// <summary>
/// What serve reports at a round barrier, where it stops, pauses and checkpoints VMs: the instructions a VM has retired
/// must be exactly those whose effects it has shown. An intercepted OUT retires when the root's reply is completed, at
/// the barrier itself, after the slice that raised it; a count taken at the end of that slice said one instruction
/// fewer than the guest had run, while its byte was already on the console. A cluster test that compares a VM stopped
/// through the cluster with <c>run --max-instructions</c> of its reported count failed now and then for that reason
/// ("tic" against "ti").
/// </summary>
public class BarrierCountTests
{
    /// <summary>A small quantum: many barriers, and many slices that end on an OUT.</summary>
    private const long Quantum = 1_000;

    [Test]
    public async Task AtEveryBarrierTheReportedCountIsThatOfARunAloneWithTheSameOutput()
    {
        // 40 lines of "tick X", an OUT a byte, 60 instructions of loop between lines.
        byte[] guest = ClusterLab.TickingGuest(40, 60);
        var seen = new List<(long Reported, long Retired, string Output)>();
        using (var machine = new TestMachine(quantum: Quantum))
        {
            VirtualMachine vm = machine.Create("ticks", guest);
            machine.System.Kernel.Scheduler.RoundCompleted += () =>
            {
                if (vm.State == PartitionState.Running)
                {
                    seen.Add((vm.Statistics.InstructionsRetired, machine.System.Root.BootInstructionsRetired(vm), machine.Output(vm)));
                }
            };
            await machine.RunAsync();
            Assert.That((await vm.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
        }

        Assert.That(seen, Has.Count.GreaterThan(10), "the run crossed many barriers");
        foreach ((long reported, long retired, string output) in seen)
        {
            Assert.That(reported, Is.EqualTo(retired), $"the count reported at a barrier, against the core's, with {output.Length} bytes out");
            using var alone = new TestMachine(quantum: Quantum);
            VirtualMachine limited = alone.Create("ticks", guest, instructionLimit: reported);
            await alone.RunAsync();
            Assert.That(alone.Output(limited), Is.EqualTo(output), $"a run alone of {reported} instructions, against the VM at a barrier where it reported as many");
        }
    }
}
