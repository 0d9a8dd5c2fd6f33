using HybridVmm.HostOS.Devices;

namespace HybridVmm.HostOS.Worker;

/// <summary>
/// The virtual-time timers of one VM's devices. The kernel keeps one deadline per partition, the earliest
/// armed one: when the boot vCPU reaches it, the kernel stops that vCPU there and posts a device-timer
/// intercept, and the worker fires every timer that is due, in the order they were created. A timer therefore
/// fires at the same guest instruction on every run.
/// </summary>
internal sealed class DeviceTimers(Action<long?> setKernelDeadline)
{
    private readonly List<Timer> _timers = new();
    private long? _kernelDeadline;

    public IVirtualTimer Create(Action<long> onExpired)
    {
        var timer = new Timer(this, onExpired);
        _timers.Add(timer);
        return timer;
    }

    /// <summary>Fires the timers due at <paramref name="now"/>; returns how many fired.</summary>
    public int FireDue(long now)
    {
        int fired = 0;
        foreach (Timer timer in _timers.ToArray())
        {
            if (timer.Deadline is { } deadline && deadline <= now)
            {
                timer.Deadline = null;
                fired++;
                timer.OnExpired(now);
            }
        }

        Update();
        return fired;
    }

    private void Update()
    {
        long? earliest = null;
        foreach (Timer timer in _timers)
        {
            if (timer.Deadline is { } deadline && (earliest is null || deadline < earliest))
            {
                earliest = deadline;
            }
        }

        if (earliest != _kernelDeadline)
        {
            _kernelDeadline = earliest;
            setKernelDeadline(earliest);
        }
    }

    private sealed class Timer(DeviceTimers owner, Action<long> onExpired) : IVirtualTimer
    {
        public Action<long> OnExpired => onExpired;

        public long? Deadline { get; set; }

        public void ArmAt(long deadline)
        {
            Deadline = deadline;
            owner.Update();
        }

        public void Cancel()
        {
            Deadline = null;
            owner.Update();
        }
    }
}
