using HybridVmm.HostOS.Vm;

namespace HybridVmm.Cli.Hosting;

/// <summary>Told by <see cref="RootPartitionService"/> about the VMs it creates from the configuration, and when the root's loop runs.</summary>
public interface IServeVmListener
{
    void Created(VirtualMachine vm, string source);

    void RootRunning();
}
