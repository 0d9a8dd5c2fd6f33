namespace HybridVmm.Hardware.Cpu;

/// <summary>
/// A segment register: the visible selector and the hidden descriptor cache the processor loads with it
/// (SDM Vol. 3A, 3.4.3, figure 3-7): base, limit (in bytes, granularity applied) and attributes.
/// </summary>
/// <remarks>
/// <see cref="Attributes"/> uses the VMX access-rights layout (SDM Vol. 3C, "Guest Register State", table "Format of Access Rights"), which is also
/// descriptor bits 40-47 and 52-55: type in bits 0-3, S in 4, DPL in 5-6, P in 7, AVL in 12, L in 13, D/B in 14
/// and G in 15. The core runs flat protected mode: loading a selector loads the flat cache (base 0,
/// limit 0xFFFFFFFF, a present 32-bit ring-0 code or data segment) without reading the GDT. Segmentation
/// proper (System/) will fill the cache from the descriptor instead.
/// </remarks>
public readonly record struct SegmentRegister(ushort Selector, uint Base, uint Limit, ushort Attributes)
{
    /// <summary>Execute/read code, accessed; S=1, DPL 0, P=1, D=1, G=1.</summary>
    public const ushort FlatCodeAttributes = 0xC09B;
    /// <summary>Read/write data, accessed; S=1, DPL 0, P=1, B=1, G=1.</summary>
    public const ushort FlatDataAttributes = 0xC093;

    /// <summary>The flat 4 GiB cache a selector load produces in this core.</summary>
    public static SegmentRegister Flat(ushort selector, bool code) =>
        new(selector, 0, 0xFFFF_FFFF, code ? FlatCodeAttributes : FlatDataAttributes);
}
