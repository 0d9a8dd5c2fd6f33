namespace HybridVmm.HostOS.Devices;

/// <summary>
/// What a device may do to its VM, handed to it when the machine is built. Emulated (chipset) devices and
/// synthetic (VMBus) devices get the same service types. Everything runs on the VM's virtual time, so a
/// device's effects land at the same guest instruction on every run.
/// </summary>
public sealed class DeviceServices(IDeviceClock clock, IVmControl control, Func<int, IInterruptLine> interruptLine, Func<Action<long>, IVirtualTimer> timer,
    Action<uint, uint>? signalMsi = null, ISynicRouting? synic = null)
{
    /// <summary>The VM's virtual time, as of the access (or timer) being served.</summary>
    public IDeviceClock Clock { get; } = clock;

    /// <summary>Requests that change the VM's run state: exit, pause, power-off, reset.</summary>
    public IVmControl Control { get; } = control;

    /// <summary>
    /// Interrupt line <paramref name="line"/> of the VM's platform: IRQ n, input n of the PC's 8259 pair (0-7 the
    /// master, 8-15 the slave), driven to the level <see cref="IInterruptLine.Raise"/> and <see cref="IInterruptLine.Lower"/>
    /// set. The PIC decides the vector when the processor acknowledges it (<see cref="DualPic8259"/>); a VM without a
    /// PIC leaves its lines unconnected.
    /// </summary>
    public IInterruptLine InterruptLine(int line) => interruptLine(line);

    /// <summary>
    /// Sends an interrupt message to the VM's local APICs in the MSI format (address 0xFEExxxxx with the destination,
    /// data with vector, delivery mode and trigger), as the I/O APIC does for its inputs. A VM without a kernel behind it
    /// (a device tested alone) drops it.
    /// </summary>
    public void SignalMsi(uint address, uint data) => signalMsi?.Invoke(address, data);

    /// <summary>The kernel's SynIC for this VM (SINT routes and ports); null for a device tested without a kernel.</summary>
    public ISynicRouting? Synic { get; } = synic;

    /// <summary>A timer that calls <paramref name="onExpired"/> with the virtual time it expired at.</summary>
    public IVirtualTimer CreateTimer(Action<long> onExpired) => timer(onExpired);
}

/// <summary>The VM's virtual clock as a device reads it.</summary>
public interface IDeviceClock
{
    long Now { get; }
}

/// <summary>
/// Run-state requests a device may make. Made while the device serves a guest access, they take effect when
/// that access completes (the instruction retires first); made at any other time, at once.
/// </summary>
public interface IVmControl
{
    /// <summary>Ends the guest with <paramref name="value"/> as its exit value (QEMU's isa-debug-exit).</summary>
    void SignalGuestExit(uint value);

    /// <summary>Pauses the VM, e.g. a template asking to be frozen.</summary>
    void RequestPause();

    /// <summary>Powers the VM off (ACPI S5, a PC's power button).</summary>
    void RequestPowerOff();

    /// <summary>
    /// Resets the VM (a PC's reset line). Until the platform can reboot a guest from its firmware, a reset stops
    /// the VM with the reason "reset", so that a guest asking for one is never left running in an undefined state.
    /// </summary>
    void RequestReset();
}

/// <summary>An interrupt line a device drives.</summary>
public interface IInterruptLine
{
    /// <summary>Asserts the line (high); a rising edge requests an edge-triggered PIC input once.</summary>
    void Raise();

    /// <summary>Deasserts the line (low).</summary>
    void Lower();

    bool IsRaised { get; }
}

/// <summary>A one-shot timer on the VM's virtual time.</summary>
public interface IVirtualTimer
{
    /// <summary>Arms the timer to fire when the VM's virtual time reaches <paramref name="deadline"/> (replacing an earlier deadline).</summary>
    void ArmAt(long deadline);

    void Cancel();

    /// <summary>The armed deadline, or null.</summary>
    long? Deadline { get; }
}
