namespace HybridVmm.HostOS.Devices;

public enum IoStatus
{
    /// <summary>The access completed; a read returns <see cref="IoResult.Value"/>.</summary>
    Ok,
    /// <summary>The device refused the access; the guest faults, with <see cref="IoResult.Error"/> as the reason.</summary>
    Error,
    /// <summary>The device completes the access later, through <see cref="IoResult.Deferred"/>; the vCPU waits.</summary>
    Deferred,
}

/// <summary>The outcome of one device access: a value, an error, or a promise to complete later.</summary>
public readonly record struct IoResult(IoStatus Status, uint Value, string? Error, DeferredIo? Deferred)
{
    public static IoResult Ok(uint value = 0) => new(IoStatus.Ok, value, null, null);

    public static IoResult Fail(string error) => new(IoStatus.Error, 0, error, null);

    /// <summary>Defers the access: the device calls <see cref="DeferredIo.Complete"/> or <see cref="DeferredIo.Fail"/> when it is done.</summary>
    public static IoResult Defer(out DeferredIo token)
    {
        token = new DeferredIo();
        return new(IoStatus.Deferred, 0, null, token);
    }
}

/// <summary>
/// A device access that completes later (a device waiting on its backend). The vCPU that made it stays
/// suspended until the device completes it; the kernel's round barrier waits for it, so the guest's view does
/// not depend on when the host finishes.
/// </summary>
public sealed class DeferredIo
{
    private readonly TaskCompletionSource<IoResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal Task<IoResult> Completion => _done.Task;

    public void Complete(uint value = 0) => _done.TrySetResult(IoResult.Ok(value));

    public void Fail(string error) => _done.TrySetResult(IoResult.Fail(error));
}
