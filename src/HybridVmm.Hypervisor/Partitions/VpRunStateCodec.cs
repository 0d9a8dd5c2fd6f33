using HybridVmm.Hardware.SavedState;

namespace HybridVmm.Hypervisor.Partitions;

/// <summary>
/// Where one vCPU of a multiprocessor partition stands in the scheduler, beyond its registers: whether it still waits
/// for a start-up IPI, and its place in the scheduling round the partition was paused in. A partition paused at an
/// instruction (<c>--save-at</c>, a pre-copy window) stops its boot vCPU in the middle of a round, after the other
/// vCPUs have used part of theirs; the order in which vCPUs of one guest run decides what they see of each other
/// (shared memory, IPIs), so a restored partition continues that round: each vCPU with the ticks it had used
/// (<paramref name="RoundTicks"/>), the boot vCPU with the budget its interrupted slice had left (<paramref name="SliceBudget"/>, 0: none).
/// </summary>
public sealed record VpRunState(bool WaitingForSipi, long RoundTicks, long SliceBudget)
{
    /// <summary>What a snapshot without the chunk means: the run state the SynIC chunk's HLT flag gives, a new round.</summary>
    public static readonly VpRunState Default = new(false, 0, 0);
}

/// <summary>
/// Chunk "runstate.vp{n}", <see cref="VpRunState"/>, version 1: u8 state (0 runnable or halted, as "synic.vp{n}" says;
/// 1 waiting for a start-up IPI), i64 ticks used in the round, i64 the interrupted slice's budget left. Optional: written
/// for partitions of more than one vCPU; a snapshot without it (every single-vCPU snapshot, and those of older builds)
/// restores as before: runnable or halted, at the start of a new round.
/// </summary>
public sealed class VpRunStateCodec : StateCodec<VpRunState>
{
    public static readonly VpRunStateCodec Instance = new();

    /// <summary>The most ticks a vCPU's place in a round may claim (a quantum is 100,000 by default).</summary>
    public const long MaxRoundTicks = 1L << 40;

    public override string StateName => "vCPU run";

    public override int Version => 1;

    public static string Tag(int vpIndex) => $"runstate.vp{vpIndex}";

    public override void Write(SavedStateWriter w, VpRunState s)
    {
        w.WriteByte(s.WaitingForSipi ? (byte)1 : (byte)0);
        w.WriteInt64(s.RoundTicks);
        w.WriteInt64(s.SliceBudget);
    }

    public override VpRunState Read(SavedStateReader r, int version)
    {
        byte state = r.ReadByte();
        if (state > 1)
        {
            throw new SavedStateFormatException($"run state {state} is neither 0 (runnable or halted) nor 1 (waiting for a start-up IPI)");
        }

        long ticks = r.ReadInt64(), budget = r.ReadInt64();
        if (ticks is < 0 or > MaxRoundTicks || budget is < 0 or > MaxRoundTicks)
        {
            throw new SavedStateFormatException($"round ticks {ticks} and slice budget {budget} must be 0 to {MaxRoundTicks}");
        }

        return new VpRunState(state == 1, ticks, budget);
    }
}
