using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.VmBus;

using HybridVmm.Hypervisor.Hv1;

namespace HybridVmm.Hypervisor.Enlightened;

/// <summary>
/// The kernel's synthetic (enlightened) interface, reached through RDMSR, WRMSR and VMCALL exits: the
/// exit dispatcher hands those exits here and charges the ticks returned. What guests ask of the root waits in
/// <see cref="RootRequests"/>.
/// </summary>
internal sealed class Enlightenments
{
    private readonly long _exitCostTicks;
    private readonly MsrHandler _msrs;
    private readonly HypercallHandler _hypercalls;

    internal Enlightenments(PartitionTable partitions, long exitCostTicks, Messaging.MessagePort<VmBusRequest> toRoot, Messaging.MessagePort<VmBusRequest> done)
    {
        _exitCostTicks = exitCostTicks;
        RootRequests = new RootRequestQueue(partitions, toRoot, done);
        _msrs = new MsrHandler(partitions);
        _hypercalls = new HypercallHandler(partitions, RootRequests);
    }

    /// <summary>Virtual ticks an exit the kernel serves itself costs (RDMSR, WRMSR, VMCALL, a local APIC register).</summary>
    public long ExitCostTicks => _exitCostTicks;

    /// <summary>Guests' requests waiting for the root, handed over at the pass barrier.</summary>
    public RootRequestQueue RootRequests { get; }

    /// <summary>Serves one RDMSR, WRMSR or VMCALL exit; returns its cost in virtual ticks.</summary>
    public long Handle(Partition partition, VirtualProcessor vp, in CpuExit exit)
    {
        X86Core core = vp.Core;
        switch (exit.Reason)
        {
            case CpuExitReason.Rdmsr:
                partition.Statistics.CountIntercept("rdmsr");
                _msrs.Read(partition, vp, exit.Value);
                break;
            case CpuExitReason.Wrmsr:
                partition.Statistics.CountIntercept("wrmsr");
                _msrs.Write(partition, vp, exit.Value, ((ulong)core[Gpr.Edx] << 32) | core[Gpr.Eax]);
                break;
            default:
                if (!partition.Hv.HypercallPageEnabled)
                {
                    // VMCALL with no hypercall page is an invalid opcode (TLFS 3.13).
                    partition.Statistics.CountIntercept("hypercall");
                    core.InjectException(ExceptionVector.InvalidOpcode);
                    break;
                }

                _hypercalls.Dispatch(partition, vp);
                break;
        }

        return _exitCostTicks;
    }
}
