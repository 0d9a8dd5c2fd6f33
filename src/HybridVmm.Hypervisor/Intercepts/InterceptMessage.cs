namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>Intercepts the kernel forwards to the root partition instead of handling itself.</summary>
public enum InterceptKind
{
    IoPortRead,
    IoPortWrite,
    /// <summary>An access to a guest-physical address with no RAM behind it (unmapped GPA / MMIO).</summary>
    UnmappedGpa,
    /// <summary>The partition reached the deadline of its devices' virtual-time timer (the boot vCPU stopped there).</summary>
    DeviceTimer,
    /// <summary>
    /// The boot vCPU reached the interrupt window the root asked for (<see cref="RootPartitionApi.SetInterruptWindow"/>):
    /// it can take an external interrupt before its next instruction. The root acknowledges its interrupt controller
    /// and answers with the vector to inject (<see cref="InterceptReply.InjectVector"/>), as Hyper-V's worker does on an
    /// X64InterruptWindow message and a KVM userspace irqchip on ready_for_interrupt_injection.
    /// </summary>
    InterruptWindow,
    /// <summary>
    /// The guest ended a level-triggered interrupt (an EOI write with the vector's TMR bit set): the root's I/O APIC
    /// clears the remote IRR of the entries with that vector (<see cref="InterceptMessage.Value"/>) and sends again if
    /// the line is still asserted. Hyper-V's HvMessageTypeX64ApicEoi; the EOI write has completed.
    /// </summary>
    ApicEoi,
}

/// <summary>
/// The message the kernel posts to the root partition's intercept port, in the role of Hyper-V's
/// HvMessageTypeX64IoPortIntercept / HvMessageTypeUnmappedGpa. The vCPU stays suspended until the
/// root answers with an <see cref="InterceptReply"/>. <see cref="VirtualTime"/> is the machine's virtual time (the
/// trace's); <see cref="GuestTime"/> is the same instant on the guest's clock, which the guest's devices run on.
/// </summary>
public readonly record struct InterceptMessage(
    int PartitionId,
    int VpIndex,
    long VirtualTime,
    InterceptKind Kind,
    ushort Port,
    byte Size,
    uint Value,
    ulong GuestPhysicalAddress,
    bool IsWrite,
    long ClockOffset = 0)
{
    /// <summary>The instant on the guest's clock: a restored partition's clock continues from its snapshot (<c>Partition.ClockOffset</c>).</summary>
    public long GuestTime => VirtualTime + ClockOffset;

    public override string ToString() => Kind switch
    {
        InterceptKind.IoPortRead => $"io-read port=0x{Port:x4} size={Size}",
        InterceptKind.IoPortWrite => $"io-write port=0x{Port:x4} size={Size} value=0x{Value.ToString(Size == 1 ? "x2" : Size == 2 ? "x4" : "x8")}",
        InterceptKind.DeviceTimer => "device-timer",
        InterceptKind.InterruptWindow => "interrupt-window",
        InterceptKind.ApicEoi => $"apic-eoi vector=0x{Value:x2}",
        _ => IsWrite
            ? $"unmapped-gpa gpa=0x{GuestPhysicalAddress:x8} write size={Size} value=0x{Value.ToString(Size == 1 ? "x2" : Size == 2 ? "x4" : "x8")}"
            : $"unmapped-gpa gpa=0x{GuestPhysicalAddress:x8} read size={Size}",
    };
}

/// <summary>What the root decided about an intercept.</summary>
public enum InterceptAction
{
    /// <summary>Complete the instruction (with <see cref="InterceptReply.Value"/> for reads) and resume.</summary>
    Resume,
    /// <summary>Stop the partition: the guest asked to exit (debug-exit port).</summary>
    ExitGuest,
    /// <summary>Complete the instruction, then pause the partition (it asked to be frozen, e.g. as a template).</summary>
    Pause,
    /// <summary>Stop the partition: nothing in the host backs the access.</summary>
    Fault,
    /// <summary>Stop the partition: the VM worker serving it failed (a device driver crashed).</summary>
    WorkerFailed,
    /// <summary>Complete the instruction, then power the partition off (a device asked for it).</summary>
    PowerOff,
    /// <summary>Complete the instruction, then reset the partition; until guests can be rebooted it stops.</summary>
    Reset,
}

/// <summary>
/// The root's answer. <paramref name="InjectVector"/> (only for <see cref="InterceptKind.InterruptWindow"/>, with
/// <see cref="InterceptAction.Resume"/>): the external interrupt to deliver before the vCPU's next instruction, or null.
/// </summary>
public readonly record struct InterceptReply(int PartitionId, int VpIndex, InterceptAction Action, uint Value, string? Reason = null, byte? InjectVector = null);
