using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// Chunk "clock", version 1: { i64 GuestClock }, the time on the VM's own clock when it was saved
/// (<c>RootPartitionApi.GuestClock</c>). The devices' and local APICs' chunks hold absolute deadlines on that clock;
/// the restored VM's clock continues from this value, so those deadlines keep their distance from the saved instruction.
/// Optional: a snapshot without it restores with its clock equal to the new machine's, as before the chunk existed.
/// </summary>
public sealed class GuestClockCodec : StateCodec<long>
{
    public const string Tag = "clock";

    public static readonly GuestClockCodec Instance = new();

    public override string StateName => "clock";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, long guestClock) => w.WriteInt64(guestClock);

    public override long Read(SavedStateReader r, int version)
    {
        long guestClock = r.ReadInt64();
        if (guestClock < 0)
        {
            throw new SavedStateFormatException($"a guest clock of {guestClock} (it is never negative)");
        }

        return guestClock;
    }
}
