namespace HybridVmm.HostOS.Devices;

/// <summary>A device driver in a VM worker has failed. The worker reports it and the kernel stops that guest alone.</summary>
public sealed class DeviceFailureException(string message) : Exception(message);
