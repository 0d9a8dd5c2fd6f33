namespace HybridVmm.Hypervisor.Hv1;

/// <summary>
/// The 64-bit hypercall input value (TLFS 3.7, "Hypercall Inputs"): call code 15:0, fast 16, variable header
/// size 25:17, nested 26, rep count 43:32, rep start index 59:48; bits 31:27, 47:44 and 63:60 are reserved.
/// A 32-bit guest passes it in EDX:EAX.
/// </summary>
public readonly record struct HypercallControl(ulong Value)
{
    private const ulong ReservedMask = (0x1FUL << 27) | (0xFUL << 44) | (0xFUL << 60);

    public ushort CallCode => (ushort)Value;
    public bool Fast => (Value & (1UL << 16)) != 0;
    public int VariableHeaderSize => (int)((Value >> 17) & 0x1FF);
    public bool Nested => (Value & (1UL << 26)) != 0;
    public int RepCount => (int)((Value >> 32) & 0xFFF);
    public int RepStartIndex => (int)((Value >> 48) & 0xFFF);
    public bool ReservedBitsSet => (Value & ReservedMask) != 0;

    /// <summary>The result value (TLFS 3.8): status 15:0, reps completed 43:32.</summary>
    public static ulong Result(HvStatus status, int repsCompleted = 0) => (ushort)status | ((ulong)(uint)repsCompleted << 32);
}
