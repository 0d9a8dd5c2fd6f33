namespace HybridVmm.Hypervisor.Apic;

/// <summary>
/// What a local APIC sends its IPIs over: the partition's system bus (<c>Partitions/ApicBus.cs</c>), which knows the
/// other vCPUs. The APIC itself knows only its own registers and core.
/// </summary>
internal interface IApicBus
{
    /// <summary>Delivers the IPI that a write of <paramref name="icrLow"/> (with ICR high's <paramref name="destination"/>) sends.</summary>
    void Send(LocalApic from, uint icrLow, byte destination);
}
