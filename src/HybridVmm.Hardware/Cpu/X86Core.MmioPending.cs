namespace HybridVmm.Hardware.Cpu;

// Placeholder until the CPU's MMIO completion lands (issue 8, item 2): no device claims MMIO before then.
public sealed partial class X86Core
{
    public void CompleteMemoryIntercept(uint readValue) =>
        throw new NotSupportedException("completing an MMIO access needs the CPU's MMIO completion");
}
