using System.Runtime.InteropServices;

namespace HybridVmm.Hardware.Memory;

/// <summary>
/// The machine's host physical memory, cut into 4 KiB frames. Who owns which frame is the hypervisor's business; the
/// hardware only stores bytes.
/// <para>
/// It is reserved, not committed: on Linux one anonymous private mapping with <c>MAP_NORESERVE</c>, as KVM's guest RAM
/// is in QEMU or Firecracker, so a frame costs the host a page only once something writes it (a read of a page never
/// written maps the kernel's shared zero page). A frame handed back with <see cref="Discard"/> is returned to the host
/// (<c>madvise(MADV_DONTNEED)</c>) and reads as zeros again. Elsewhere it is one zeroed native allocation, and
/// <see cref="Discard"/> clears the frames.
/// </para>
/// </summary>
public sealed unsafe class HostPhysicalMemory
{
    public const int FrameShift = 12;
    public const int FrameSize = 1 << FrameShift;

    /// <summary>
    /// The largest machine: 64 GiB. Frame numbers must fit the second-level table's entries (2^30 frames), and the
    /// allocator keeps a reference count per frame (4 bytes per 4 KiB, 64 MiB at this size).
    /// </summary>
    public const long MaxBytes = 64L << 30;

    private readonly byte* _base;
    private readonly long _length;
    private readonly bool _mapped;

    public HostPhysicalMemory(int frameCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frameCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)frameCount * FrameSize, MaxBytes);
        FrameCount = frameCount;
        _length = (long)frameCount * FrameSize;
        if (OperatingSystem.IsLinux() && Environment.SystemPageSize == FrameSize)
        {
            nint address = Native.mmap(0, (nuint)_length, Native.ProtRead | Native.ProtWrite,
                Native.MapPrivate | Native.MapAnonymous | Native.MapNoReserve, -1, 0);
            if (address == Native.MapFailed)
            {
                throw new OutOfMemoryException($"cannot reserve {_length >> 20} MiB of address space for host memory (errno {Marshal.GetLastPInvokeError()})");
            }

            _base = (byte*)address;
            _mapped = true;
        }
        else
        {
            _base = (byte*)NativeMemory.AllocZeroed((nuint)_length);
        }

        // The store is freed when this object is collected: tell the collector what it holds, so that machines a
        // program (a test suite) no longer uses give their pages back soon. At most 1 GiB: a large reservation is
        // mostly never touched.
        GC.AddMemoryPressure(Pressure);
    }

    private long Pressure => Math.Min(_length, 1L << 30);

    ~HostPhysicalMemory()
    {
        GC.RemoveMemoryPressure(Pressure);
        if (_mapped)
        {
            Native.munmap((nint)_base, (nuint)_length);
        }
        else
        {
            NativeMemory.Free(_base);
        }
    }

    public int FrameCount { get; }

    /// <summary>
    /// The backing store's first byte, indexed by host physical address. The CPU core reads and writes through it after
    /// translation; whoever holds it must also hold this object, which frees the store when it is collected.
    /// </summary>
    public byte* Base => _base;

    /// <summary>The whole store as one span, for machines of less than 2 GiB (tests and tools).</summary>
    public Span<byte> Bytes => _length <= int.MaxValue
        ? new Span<byte>(_base, (int)_length)
        : throw new InvalidOperationException($"host memory of {_length >> 20} MiB is too large for one span; use Frame");

    public Span<byte> Frame(int hostFrameNumber)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(hostFrameNumber);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(hostFrameNumber, FrameCount);
        return new Span<byte>(_base + ((long)hostFrameNumber << FrameShift), FrameSize);
    }

    /// <summary>
    /// Gives frames back: afterwards they read as zeros and, on Linux, no longer cost the host memory until they are
    /// written again.
    /// </summary>
    public void Discard(int firstFrame, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstFrame);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)firstFrame + count, FrameCount);
        byte* start = _base + ((long)firstFrame << FrameShift);
        long bytes = (long)count << FrameShift;
        if (count == 0 || (_mapped && Native.madvise((nint)start, (nuint)bytes, Native.MadvDontNeed) == 0))
        {
            return;
        }

        NativeMemory.Clear(start, (nuint)bytes);
    }

    // DllImport rather than LibraryImport: no source generator, so the architecture report's analysis (which compiles
    // without generated sources) resolves every name.
    private static class Native
    {
        public const int ProtRead = 1, ProtWrite = 2;
        public const int MapPrivate = 0x02, MapAnonymous = 0x20, MapNoReserve = 0x4000;
        public const int MadvDontNeed = 4;
        public static readonly nint MapFailed = -1;

        [DllImport("libc", EntryPoint = "mmap", SetLastError = true)]
        public static extern nint mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

        [DllImport("libc", EntryPoint = "munmap", SetLastError = true)]
        public static extern int munmap(nint address, nuint length);

        [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
        public static extern int madvise(nint address, nuint length, int advice);
    }
}
