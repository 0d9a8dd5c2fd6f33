namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// The guest memory both CPUs see: 1 MiB at physical 0, flat segments. Each block of test cases has one
/// instruction per 16-byte slot in the code region; memory operands point into the data window and the
/// stack pointer into the stack window, both refilled with random bytes before every case.
/// </summary>
internal static class MachineLayout
{
    public const uint MemorySize = 0x100000;
    public const uint CodeBase = 0xC0000;
    public const int SlotSize = 16;
    public const int CasesPerBlock = 4096;
    public const uint CodeEnd = CodeBase + SlotSize * CasesPerBlock;

    public const uint DataWindow = 0x40000;
    public const int DataWindowSize = 0x200;
    /// <summary>Memory operands land in [DataTarget, DataTarget + DataTargetRange).</summary>
    public const uint DataTarget = DataWindow + 0xC0;
    public const int DataTargetRange = 0x80;

    /// <summary>Target of 16-bit addressing (0x67 prefix), which wraps at 64 KiB: memory operands land in
    /// [LowTarget, LowTarget + LowTargetRange).</summary>
    public const uint LowWindow = 0x8000 - 0x100;
    public const int LowWindowSize = 0x200;
    public const uint LowTarget = LowWindow + 0x80;
    public const int LowTargetRange = 0x100;

    public const uint StackWindow = 0x60000 - 0x100;
    public const int StackWindowSize = 0x200;
    public const uint StackTop = 0x60000;

    /// <summary>
    /// Only the pages of the two windows are writable (and, on Unicorn, not executable); everything else is
    /// HLT bytes and read-only on both CPUs. A stray write faults on both sides instead of planting code that
    /// a later jump would run: QEMU's TCG aborts the process on some random byte sequences.
    /// </summary>
    public static bool IsWritablePage(uint address) => (address >> 12) is 0x7 or 0x8 or 0x40 or 0x5F or 0x60;
}
