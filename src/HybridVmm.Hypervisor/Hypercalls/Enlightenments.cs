using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Partitions;

namespace HybridVmm.Hypervisor.Hypercalls;

/// <summary>
/// The kernel's synthetic (enlightened) interface, reached through RDMSR, WRMSR and VMCALL exits: the
/// scheduler hands those exits here and charges the ticks returned.
/// </summary>
internal sealed class Enlightenments
{
    private readonly HypervisorKernel _kernel;

    internal Enlightenments(HypervisorKernel kernel) => _kernel = kernel;

    /// <summary>Serves one RDMSR, WRMSR or VMCALL exit; returns its cost in virtual ticks.</summary>
    public long Handle(Partition partition, VirtualProcessor vp, in CpuExit exit)
    {
        _ = partition;
        // No synthetic MSRs or hypercalls yet: an unknown MSR is #GP(0), VMCALL without a hypercall page is #UD.
        vp.Core.InjectException(exit.Reason == CpuExitReason.Vmcall ? ExceptionVector.InvalidOpcode : ExceptionVector.GeneralProtection);
        return _kernel.Options.SyntheticExitCostTicks;
    }
}
