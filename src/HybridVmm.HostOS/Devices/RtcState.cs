using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>
/// The RTC's saved state: the index, the NMI-disable bit, the 128 CMOS bytes, and the clock as (seconds since
/// 0001-01-01 UTC at a virtual time), the time it stands at while stopped, and when register C was last read.
/// </summary>
public sealed record RtcState(byte Index, bool NmiDisabled, byte[] Cmos, long BaseSeconds, long BaseTime, long FrozenSeconds, long FlagsCheckedAt);

/// <summary>
/// Chunk "device.rtc", version 1: index (byte), NMI disabled (boolean), the 128 CMOS bytes, then base seconds,
/// base virtual time, frozen seconds and flags-checked virtual time (i64 each).
/// </summary>
public sealed class RtcStateCodec : StateCodec<RtcState>
{
    public const int CmosBytes = 128;

    public static readonly RtcStateCodec Instance = new();

    public override string StateName => "MC146818 RTC";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, RtcState s)
    {
        w.WriteByte(s.Index);
        w.WriteBoolean(s.NmiDisabled);
        w.WriteBytes(s.Cmos);
        w.WriteInt64(s.BaseSeconds);
        w.WriteInt64(s.BaseTime);
        w.WriteInt64(s.FrozenSeconds);
        w.WriteInt64(s.FlagsCheckedAt);
    }

    public override RtcState Read(SavedStateReader r, int version) => new(
        r.ReadByte(), r.ReadBoolean(), r.ReadBytes(CmosBytes), r.ReadInt64(), r.ReadInt64(), r.ReadInt64(), r.ReadInt64());
}
