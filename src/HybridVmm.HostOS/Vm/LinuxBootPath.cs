namespace HybridVmm.HostOS.Vm;

/// <summary>How a Linux bzImage reaches its kernel (docs/guest-platform.md, "Fast boot").</summary>
public enum LinuxBootPath
{
    /// <summary>The whole bzImage is loaded at 1 MiB and its own decompressor runs in the guest, as under QEMU's -kernel.</summary>
    Decompressor,

    /// <summary>The host unpacks the bzImage's XZ or gzip payload and starts the kernel past its decompressor, as Firecracker does.</summary>
    Fast,
}
