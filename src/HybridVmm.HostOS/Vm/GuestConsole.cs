namespace HybridVmm.HostOS.Vm;

/// <summary>Where a guest's COM1 bytes go, stamped with the virtual time they were written at.</summary>
public interface IGuestConsole
{
    void Write(VirtualMachine vm, long virtualTime, byte value);

    /// <summary>Called at each scheduler round barrier and at the end, from the scheduler thread.</summary>
    void Flush();
}
