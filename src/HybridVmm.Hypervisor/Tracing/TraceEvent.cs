namespace HybridVmm.Hypervisor.Tracing;

/// <summary>What a trace record is about. The text form uses these names verbatim.</summary>
public enum TraceKind
{
    Lifecycle,
    Intercept,
    Message,
    Device,
    Cpuid,
    Fault,
    /// <summary>A synthetic MSR access the kernel served (TLFS).</summary>
    Msr,
    /// <summary>A hypercall (VMCALL through the hypercall page) and its status.</summary>
    Hypercall,
    /// <summary>A SynIC message or event flag delivered to a guest.</summary>
    Synic,
    /// <summary>The root's VMBus server and its synthetic devices.</summary>
    VmBus,
    /// <summary>A root access to guest memory that no grant (GPADL) allows: refused.</summary>
    Grant,
}

/// <summary>
/// One trace record. Time is virtual: the instructions the partition's vCPU had retired when the event
/// happened, so the same guest and configuration always produce the same records.
/// </summary>
public readonly record struct TraceEvent(
    long VirtualTime,
    int PartitionId,
    int VpIndex,
    TraceKind Kind,
    string Details,
    long Sequence)
{
    /// <summary>The readable text form, one line per event (documented in docs/trace-format.md).</summary>
    public string Format(string partitionName) =>
        VpIndex < 0
            ? $"{VirtualTime,12} {partitionName}/-  {Kind,-9} {Details}"
            : $"{VirtualTime,12} {partitionName}/{VpIndex}  {Kind,-9} {Details}";
}
