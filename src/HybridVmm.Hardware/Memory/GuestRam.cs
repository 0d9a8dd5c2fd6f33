namespace HybridVmm.Hardware.Memory;

/// <summary>
/// Where a guest's RAM lies in its guest-physical address space, as QEMU's i386 PC lays it out (hw/i386/pc_piix.c): a
/// RAM of less than 0xE0000000 bytes (3.5 GiB) lies whole from 0 up to its size; from 3584 MiB on, the first 3 GiB lie
/// below 4 GiB and the rest from 0x100000000 on, where only a PAE guest reaches it (MAXPHYADDR 36). The 32-bit space
/// above the low RAM is left to devices (the I/O APIC at 0xFEC00000, the local APIC at 0xFEE00000). At most 4 GiB.
/// </summary>
public static class GuestRam
{
    /// <summary>The largest guest: 4096 MiB.</summary>
    public const ulong MaxBytes = 4UL << 30;

    /// <summary>A RAM of this size or more is split: <see cref="SplitBelow4G"/> below 4 GiB, the rest above.</summary>
    public const ulong SplitFrom = 0xE000_0000;

    /// <summary>How much of a split RAM lies below 4 GiB.</summary>
    public const ulong SplitBelow4G = 0xC000_0000;

    /// <summary>Where the RAM above 4 GiB starts.</summary>
    public const ulong HighBase = 1UL << 32;

    /// <summary>The guest-physical address width (CPUID 0x80000008 EAX[7:0]): QEMU's 32-bit CPUs with PAE have 36.</summary>
    public const int MaxPhysicalAddressBits = 36;

    /// <summary>The bytes of RAM that lie from guest-physical 0 up.</summary>
    public static ulong BelowFourGiB(ulong size) => size < SplitFrom ? size : SplitBelow4G;

    /// <summary>The bytes of RAM that lie from <see cref="HighBase"/> up (0 for a RAM below 3584 MiB).</summary>
    public static ulong AboveFourGiB(ulong size) => size - BelowFourGiB(size);

    /// <summary>The end of the highest RAM range: the size of the guest-physical space the RAM needs.</summary>
    public static ulong End(ulong size) => AboveFourGiB(size) == 0 ? size : HighBase + AboveFourGiB(size);

    /// <summary>Whether the guest page <paramref name="page"/> (a guest-physical address shifted by 12) is RAM.</summary>
    public static bool IsRamPage(ulong size, ulong page) =>
        page < BelowFourGiB(size) >> HostPhysicalMemory.FrameShift
        || (page >= HighBase >> HostPhysicalMemory.FrameShift && page < End(size) >> HostPhysicalMemory.FrameShift);

    /// <summary>Whether <c>[gpa, gpa + length)</c> lies in one RAM range.</summary>
    public static bool IsRam(ulong size, ulong gpa, ulong length)
    {
        ulong low = BelowFourGiB(size);
        return (gpa <= low && length <= low - gpa)
            || (AboveFourGiB(size) != 0 && gpa >= HighBase && gpa - HighBase <= AboveFourGiB(size) && length <= AboveFourGiB(size) - (gpa - HighBase));
    }
}
