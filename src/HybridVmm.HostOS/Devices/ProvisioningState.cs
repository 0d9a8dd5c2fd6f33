using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Devices;

/// <summary>The provisioning port's saved state: the identity it reports to the guest.</summary>
public sealed record ProvisioningState(uint Identity);

/// <summary>Chunk "device.provisioning", version 1: the identity as a u32.</summary>
public sealed class ProvisioningStateCodec : StateCodec<ProvisioningState>
{
    public static readonly ProvisioningStateCodec Instance = new();

    public override string StateName => "provisioning device";

    public override int Version => 1;

    public override void Write(SavedStateWriter w, ProvisioningState s) => w.WriteUInt32(s.Identity);

    public override ProvisioningState Read(SavedStateReader r, int version) => new(r.ReadUInt32());
}
