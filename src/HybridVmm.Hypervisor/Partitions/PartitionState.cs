namespace HybridVmm.Hypervisor.Partitions;

public enum PartitionState
{
    Created,
    Running,
    Paused,
    Stopped,
}

/// <summary>Why a partition stopped. Each maps to a documented CLI exit status.</summary>
public enum StopReason
{
    None,
    /// <summary>The guest wrote its exit value to the debug-exit port.</summary>
    GuestExit,
    /// <summary>An exception the guest could not handle, or an access nothing backs.</summary>
    GuestFault,
    /// <summary>The root partition's worker for this guest failed (a device driver crashed).</summary>
    WorkerFailure,
    /// <summary>Every vCPU halted with nothing that could ever wake it.</summary>
    Halted,
    /// <summary>The partition reached its instruction limit.</summary>
    InstructionLimit,
    /// <summary>The root partition stopped it (VM management, shutdown).</summary>
    StoppedByRoot,
    /// <summary>A device powered the VM off at the guest's request (a PC's power-off).</summary>
    PoweredOff,
    /// <summary>A device reset the VM at the guest's request; until guests can be rebooted, the VM stops (QEMU's -no-reboot).</summary>
    Reset,
}

/// <summary>How a partition ended: the reason, the guest's exit value and, for faults, a diagnostic.</summary>
public sealed record PartitionExit(StopReason Reason, uint ExitValue, string? Diagnostic);
