namespace HybridVmm.Hardware.Memory;

/// <summary>
/// The machine's host physical memory: one contiguous array cut into 4 KiB frames.
/// Who owns which frame is the hypervisor's business; the hardware only stores bytes.
/// </summary>
public sealed class HostPhysicalMemory
{
    public const int FrameShift = 12;
    public const int FrameSize = 1 << FrameShift;

    /// <summary>The largest machine: host memory is one .NET array, so just under 2 GiB.</summary>
    public const long MaxBytes = (long)(int.MaxValue / FrameSize) * FrameSize - FrameSize * 8;

    private readonly byte[] _bytes;

    public HostPhysicalMemory(int frameCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frameCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)frameCount * FrameSize, MaxBytes);
        FrameCount = frameCount;
        _bytes = GC.AllocateUninitializedArray<byte>(checked(frameCount * FrameSize));
        Array.Clear(_bytes);
    }

    public int FrameCount { get; }

    /// <summary>The raw backing store, indexed by host physical address. The CPU core uses it after translation.</summary>
    public byte[] Bytes => _bytes;

    public Span<byte> Frame(int hostFrameNumber) => _bytes.AsSpan(hostFrameNumber * FrameSize, FrameSize);
}
