using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

/// <summary>Run-state requests a device made, counted.</summary>
internal sealed class CountingControl : IVmControl
{
    public int Resets { get; private set; }

    public int Others { get; private set; }

    public void SignalGuestExit(uint value) => Others++;

    public void RequestPause() => Others++;

    public void RequestPowerOff() => Others++;

    public void RequestReset() => Resets++;
}

/// <summary>A virtual clock the test moves by hand (ticks are nanoseconds).</summary>
internal sealed class ManualClock : IDeviceClock
{
    public long Now { get; set; }
}

/// <summary>An interrupt line that records what the device did with it: its level and how many rising edges.</summary>
internal sealed class RecordingLine : IInterruptLine
{
    public int Raises { get; private set; }

    public bool IsRaised { get; private set; }

    public void Raise()
    {
        if (!IsRaised) Raises++;
        IsRaised = true;
    }

    public void Lower() => IsRaised = false;
}

/// <summary>A virtual timer the test fires by hand: it only holds the deadline the device armed.</summary>
internal sealed class ManualTimer(Action<long> onExpired) : IVirtualTimer
{
    public Action<long> OnExpired => onExpired;

    public long? Deadline { get; set; }

    public void ArmAt(long deadline) => Deadline = deadline;

    public void Cancel() => Deadline = null;
}

internal static class PortIo
{
    public static uint In(this IPortIoDevice device, ushort port, int size = 1)
    {
        IoResult result = device.Read(port, size);
        Assert.That(result.Status, Is.EqualTo(IoStatus.Ok), $"read 0x{port:x} size {size}");
        return result.Value & (size == 4 ? 0xFFFF_FFFFu : (1u << (8 * size)) - 1);
    }

    public static void Out(this IPortIoDevice device, ushort port, uint value, int size = 1) =>
        Assert.That(device.Write(port, size, value).Status, Is.EqualTo(IoStatus.Ok), $"write 0x{port:x} size {size}");

    /// <summary>Saves a device through the untyped chunk contract and restores the chunk into another.</summary>
    public static bool CopyStateTo<T>(this T from, T to) where T : IPersistentState
    {
        SavedStateChunk chunk = from.SaveChunk("device.test")!;
        return to.RestoreChunk(chunk);
    }
}
