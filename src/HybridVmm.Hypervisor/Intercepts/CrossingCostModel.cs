namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>Where emulated devices run, which decides what an I/O exit has to cross (the lecture's Type 1/2/3).</summary>
public enum DeviceHosting
{
    /// <summary>Type 3: the root partition's VM worker serves the intercept through message ports.</summary>
    Hybrid,
    /// <summary>Type 1: the device model runs inside the hypervisor kernel; the exit is handled where it lands.</summary>
    Type1,
    /// <summary>Type 2: the hypervisor is a process of a host OS; every exit returns to that process through the
    /// host's system-call boundary and scheduler, and the device backend is a host system call.</summary>
    Type2,
}

/// <summary>What one I/O intercept costs: virtual ticks (cycles of the nominal 1 GHz core) and boundary crossings.</summary>
public readonly record struct InterceptCost(long Ticks, int Crossings);

/// <summary>
/// The virtual-cycle cost model charged for each intercept. The constants are order-of-magnitude figures from
/// published measurements, collected with their sources in docs/scenarios.md; they are inputs to a model,
/// not measurements of this simulator.
/// </summary>
public sealed record CrossingCostModel
{
    /// <summary>A hardware VM exit and the VM entry back (VMX transition round trip).</summary>
    public long VmExitCycles { get; init; } = 2_000;

    /// <summary>One user/kernel transition pair of a system call, with today's speculation mitigations.</summary>
    public long SystemCallCycles { get; init; } = 500;

    /// <summary>One switch through an OS scheduler to another thread or process.</summary>
    public long ContextSwitchCycles { get; init; } = 3_000;

    /// <summary>Posting one inter-partition message and signalling its receiver (a hypercall plus SynIC delivery).</summary>
    public long MessageCycles { get; init; } = 1_500;

    /// <summary>The device model's own work for one register access.</summary>
    public long EmulationCycles { get; init; } = 300;

    public InterceptCost For(DeviceHosting hosting) => hosting switch
    {
        // exit into the hypervisor, emulate, resume.
        DeviceHosting.Type1 => new(VmExitCycles + EmulationCycles, 1),
        // exit; return to the VMM process (syscall + host scheduler); emulate; the backend's host syscall; back in.
        DeviceHosting.Type2 => new(VmExitCycles + 2 * SystemCallCycles + 2 * ContextSwitchCycles + EmulationCycles + SystemCallCycles, 1 + 2 + 2 + 1),
        // exit; message to the root; the root schedules the guest's worker; emulate; reply message; root switches back.
        _ => new(VmExitCycles + 2 * MessageCycles + 2 * ContextSwitchCycles + EmulationCycles, 1 + 2 + 2),
    };
}
