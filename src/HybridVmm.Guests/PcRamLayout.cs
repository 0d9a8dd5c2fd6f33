namespace HybridVmm.Guests;

/// <summary>
/// Where a PC's RAM lies, for the loaders' memory maps: QEMU's i386 PC rule (hw/i386/pc_piix.c), a RAM below 0xE0000000
/// bytes whole from 0, a larger one 3 GiB from 0 and the rest from 4 GiB. The machine itself lays RAM out by
/// <c>HybridVmm.Hardware.Memory.GuestRam</c>, which this project (beside Hardware, not above it) cannot name; a test
/// checks the two agree.
/// </summary>
public static class PcRamLayout
{
    public const ulong HighBase = 1UL << 32;

    /// <summary>The bytes of RAM from guest-physical 0 up.</summary>
    public static ulong BelowFourGiB(ulong size) => size < 0xE000_0000 ? size : 0xC000_0000;

    /// <summary>The bytes of RAM from 4 GiB up.</summary>
    public static ulong AboveFourGiB(ulong size) => size - BelowFourGiB(size);
}
