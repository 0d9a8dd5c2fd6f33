using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// serve pauses a VM at a round barrier, not at an instruction of its boot vCPU (docs/serve.md): its save, its checkpoint
/// and its live migration capture a multiprocessor VM there. At a barrier a vCPU whose last exit's cost crossed the end
/// of the round carries the excess into its next round, and the next round begins for each vCPU at its carry; a snapshot
/// that lost that would start every vCPU afresh, and the vCPUs would take their turns at other instructions.
/// <see cref="MultiprocessorSnapshotTests"/>' guest prints how far the other vCPU has counted and its own time stamp
/// counter, which both depend on those turns; saved at every barrier of its run and restored in another machine, it must
/// print what an uninterrupted run prints (without the carries kept, it printed other lines after most barriers).
/// </summary>
public class BarrierSnapshotTests
{
    /// <summary>A quantum ten times smaller than the default: more barriers, and more of the boot vCPU's exits crossing a round's end.</summary>
    private const long Quantum = 10_000;

    private static VmConfiguration TwoVcpus() => new()
    {
        Name = "smp", Image = MultiprocessorSnapshotTests.Guest(), MemoryBytes = 4u << 20, Processors = 2,
    };

    private static async Task<string> UninterruptedAsync()
    {
        using var machine = new TestMachine(quantum: Quantum);
        VirtualMachine vm = machine.Create(TwoVcpus());
        await machine.RunAsync();
        Assert.That((await vm.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
        return machine.Output(vm);
    }

    /// <summary>
    /// Runs the guest and, at the barrier after round <paramref name="round"/>, pauses it as serve does (the root's pause,
    /// between rounds) and captures it. Null when the guest had stopped by then.
    /// </summary>
    private static async Task<(string Before, byte[] Snapshot)?> SaveAtBarrierAsync(long round)
    {
        using var machine = new TestMachine(quantum: Quantum);
        VirtualMachine vm = machine.Create(TwoVcpus());
        (string Before, byte[] Snapshot)? saved = null;
        machine.System.Kernel.Scheduler.RoundCompleted += () =>
        {
            if (machine.System.Kernel.Scheduler.Rounds == round && vm.State == PartitionState.Running)
            {
                machine.System.Root.Pause(vm);
                saved = (machine.Output(vm), SnapshotFormat.Serialize(machine.System.Root.CaptureSnapshot(vm)));
            }
        };
        await machine.RunAsync();
        return saved;
    }

    private static async Task<string> RestoreAndRunAsync(byte[] file)
    {
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(file, out string error)!;
        Assert.That(snapshot, Is.Not.Null, error);
        using var machine = new TestMachine(quantum: Quantum);
        VirtualMachine? vm = machine.System.Root.RestoreVm(snapshot, out VmCreationError? refused);
        Assert.That(vm, Is.Not.Null, refused?.Message);
        await machine.RunAsync();
        Assert.That((await vm!.Exited).Reason, Is.EqualTo(StopReason.GuestExit), vm.Exited.Result.Diagnostic);
        return machine.Output(vm);
    }

    [Test]
    public async Task ATwoVcpuGuestSavedAtARoundBarrierContinuesExactlyWhenRestored()
    {
        string whole = await UninterruptedAsync();
        int saves = 0, carried = 0;
        var differing = new List<long>();
        // Every 23rd barrier (the run has about 800 rounds): before the start-up IPI, and while both vCPUs run.
        for (long round = 2; ; round += 23)
        {
            if (await SaveAtBarrierAsync(round) is not { } saved)
            {
                break;
            }

            saves++;
            VmSnapshot snapshot = SnapshotFormat.TryDeserialize(saved.Snapshot, out _)!;
            // The premise: at some barriers a vCPU carries ticks into the next round (its place there is not 0).
            if (snapshot.Enlightened.VirtualProcessors.Any(v => v.Run is { RoundTicks: > 0 }))
            {
                carried++;
            }

            snapshot.Memory.Dispose();
            if (saved.Before + await RestoreAndRunAsync(saved.Snapshot) != whole)
            {
                differing.Add(round);
            }
        }

        Assert.Multiple(() =>
        {
            Assert.That(saves, Is.GreaterThan(20), "the guest runs through many rounds");
            Assert.That(carried, Is.Positive, "at some barrier a vCPU carried ticks into its next round");
            Assert.That(differing, Is.Empty, "rounds after whose barrier the saved and restored guest printed other lines than an uninterrupted run");
        });
    }

    /// <summary>
    /// serve's live migration starts from a VM it paused at a barrier, then runs the guest's pre-copy windows from there
    /// (each ending at an instruction of the boot vCPU): the windows must take up each vCPU's place in the round after the
    /// barrier, and the VM moved to the other machine must print what an unmigrated run prints.
    /// </summary>
    [TestCase(97)]
    [TestCase(304)]
    public async Task ATwoVcpuGuestPausedAtARoundBarrierAndLiveMigratedPrintsWhatAnUnmigratedRunPrints(long round)
    {
        string whole = await UninterruptedAsync();
        using var source = new TestMachine(quantum: Quantum);
        using var target = new TestMachine(quantum: Quantum);
        VirtualMachine vm = source.Create(TwoVcpus());
        source.System.Kernel.Scheduler.RoundCompleted += () =>
        {
            if (source.System.Kernel.Scheduler.Rounds == round && vm.State == PartitionState.Running)
            {
                source.System.Root.Pause(vm);
            }
        };
        await source.RunAsync();
        Assert.That(vm.State, Is.EqualTo(PartitionState.Paused), "paused at the barrier");

        (MigrationReport report, VirtualMachine? moved) = await LiveMigration.OverLoopbackAsync(
            source.System, vm, target.System, new MigrationOptions { MinimumWindowTicks = 5_000, TicksPerPage = 64 });
        Assert.That(report.Succeeded, Is.True, report.Failure);
        target.System.Root.Start(moved!);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await target.System.RunUntilIdleAsync(timeout.Token);

        Assert.Multiple(() =>
        {
            Assert.That(moved!.Exited.Result.Reason, Is.EqualTo(StopReason.GuestExit), moved.Exited.Result.Diagnostic);
            Assert.That(source.Output(vm) + target.Output(moved!), Is.EqualTo(whole));
        });
    }

    /// <summary>
    /// Runs the two-vCPU guest beside a one-vCPU spinner (which keeps the machine's rounds going), pausing the guest at
    /// the barrier after round <paramref name="pauseAt"/> and resuming it at the barrier after round <paramref name="resumeAt"/>
    /// (neither: never paused). Returns its output's lines.
    /// </summary>
    private static async Task<string[]> BesideASpinnerAsync(long pauseAt = 0, long resumeAt = 0)
    {
        using var machine = new TestMachine(quantum: Quantum);
        VirtualMachine vm = machine.Create(TwoVcpus());
        machine.Create(new VmConfiguration { Name = "spinner", Image = FlatKernel.Spin(), MemoryBytes = 2u << 20, InstructionLimit = 20_000_000 });
        machine.System.Kernel.Scheduler.RoundCompleted += () =>
        {
            long round = machine.System.Kernel.Scheduler.Rounds;
            if (round == pauseAt && vm.State == PartitionState.Running)
            {
                machine.System.Root.Pause(vm);
            }
            else if (round == resumeAt && vm.State == PartitionState.Paused)
            {
                machine.System.Root.Start(vm);
            }
        };
        await machine.RunAsync();
        Assert.That((await vm.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
        return machine.Output(vm).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>
    /// serve's pause and resume of a VM of two vCPUs beside a running one: while paused, the machine's time runs on (the
    /// guest sees the time its neighbour used, as a paused VM of one vCPU does), and each vCPU takes up its place in the
    /// round when it resumes. So every line shows the same count of the other vCPU as a run never paused (the same turns),
    /// and its time stamp counter the same value before the pause, and that value plus the time the pause lasted after it.
    /// </summary>
    [TestCase(97, 103)]
    [TestCase(304, 305)]
    public async Task ATwoVcpuGuestPausedAndResumedBesideARunningOneTakesTheSameTurns(long pauseAt, long resumeAt)
    {
        string[] whole = await BesideASpinnerAsync(), lines = await BesideASpinnerAsync(pauseAt, resumeAt);
        static (uint Count, uint Tsc)[] Columns(string[] lines) =>
            [.. lines.Skip(1).Select(l => l.Split(' ')).Select(f => (Convert.ToUInt32(f[0], 16), Convert.ToUInt32(f[1], 16)))];
        (uint Count, uint Tsc)[] expected = Columns(whole), got = Columns(lines);
        long[] shifts = [.. got.Zip(expected, (g, e) => (long)g.Tsc - e.Tsc)];
        long paused = (resumeAt - pauseAt) * Quantum;
        Assert.Multiple(() =>
        {
            Assert.That(lines, Has.Length.EqualTo(whole.Length));
            Assert.That(got.Select(l => l.Count), Is.EqualTo(expected.Select(l => l.Count)), "the other vCPU's count on every line: the same turns");
            Assert.That(shifts.TakeWhile(d => d == 0).Count(), Is.InRange(1, shifts.Length - 1), "the lines before the pause at the same times");
            Assert.That(shifts.SkipWhile(d => d == 0).First(), Is.EqualTo(paused), "the first line after it later by the rounds it sat out beside the spinner");
            // The later times stamp other hex digits, and the guest's hex loop takes one instruction more for a digit above
            // 9: each line after the pause moves by the few instructions its own digits cost, and no more.
            Assert.That(shifts.SkipWhile(d => d == 0), Has.All.InRange(paused - 100, paused + 100));
        });
    }
}
