using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>fw_cfg's saved state: the selected key and how far the guest has read it.</summary>
public sealed record FwCfgState(ushort Selected, uint Offset);

/// <summary>Chunk "device.fw-cfg", version 1: the key (u16), then the offset (u32).</summary>
public sealed class FwCfgStateCodec : StateCodec<FwCfgState>
{
    public static readonly FwCfgStateCodec Instance = new();

    public override string StateName => "fw_cfg";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, FwCfgState s)
    {
        w.WriteUInt16(s.Selected);
        w.WriteUInt32(s.Offset);
    }

    public override FwCfgState Read(SavedStateReader r, int version) => new(r.ReadUInt16(), r.ReadUInt32());
}
