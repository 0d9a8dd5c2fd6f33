namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>Segment and gate descriptors (SDM Vol. 3A, 3.4.5 and 5.8.3), encoded and decoded.</summary>
internal static class Descriptors
{
    /// <summary>A code, data or system segment descriptor.</summary>
    public static ulong Segment(uint baseAddress, uint limit20, int type, bool s, int dpl, bool present, bool db, bool g, bool avl = false)
    {
        uint low = (baseAddress << 16) | (limit20 & 0xFFFF);
        uint high = ((baseAddress >> 16) & 0xFF) | ((uint)type << 8) | (s ? 1u << 12 : 0) | ((uint)dpl << 13) | (present ? 1u << 15 : 0)
            | (limit20 & 0xF0000) | (avl ? 1u << 20 : 0) | (db ? 1u << 22 : 0) | (g ? 1u << 23 : 0) | (baseAddress & 0xFF00_0000);
        return low | (ulong)high << 32;
    }

    /// <summary>A call, interrupt, trap or task gate (type 4, 5, 6, 7, 0xC, 0xE, 0xF).</summary>
    public static ulong Gate(ushort selector, uint offset, int type, int dpl, bool present, int parameters = 0)
    {
        uint low = (offset & 0xFFFF) | ((uint)selector << 16);
        uint high = ((uint)parameters & 0x1F) | ((uint)type << 8) | ((uint)dpl << 13) | (present ? 1u << 15 : 0) | (offset & 0xFFFF_0000);
        return low | (ulong)high << 32;
    }

    public readonly record struct Decoded(uint Base, uint Limit, int Type, bool S, int Dpl, bool Present, bool Big)
    {
        public bool IsCode => S && (Type & 8) != 0;
        public bool IsData => S && (Type & 8) == 0;
        public bool Writable => IsData && (Type & 2) != 0;
        public bool Readable => IsData || (Type & 2) != 0;
        public bool ExpandDown => IsData && (Type & 4) != 0;
        public bool Conforming => IsCode && (Type & 4) != 0;
    }

    public static Decoded Decode(ulong d)
    {
        uint low = (uint)d, high = (uint)(d >> 32);
        uint limit = (low & 0xFFFF) | (high & 0xF0000);
        if ((high & (1u << 23)) != 0) limit = (limit << 12) | 0xFFF;
        return new Decoded((low >> 16) | ((high & 0xFF) << 16) | (high & 0xFF00_0000), limit, (int)(high >> 8) & 0xF,
            (high & (1u << 12)) != 0, (int)(high >> 13) & 3, (high & (1u << 15)) != 0, (high & (1u << 22)) != 0);
    }

    public static string Describe(ulong d)
    {
        Decoded x = Decode(d);
        if (!x.S) return $"system type {x.Type:x} dpl {x.Dpl}{(x.Present ? "" : " NP")} [{d:x16}]";
        string kind = x.IsCode ? $"code{(x.Conforming ? " conforming" : "")}{(x.Readable ? " readable" : " exec-only")}"
            : $"data{(x.Writable ? " rw" : " ro")}{(x.ExpandDown ? " expand-down" : "")}";
        return $"{kind} base {x.Base:x8} limit {x.Limit:x8} dpl {x.Dpl}{(x.Big ? " 32" : " 16")}{(x.Present ? "" : " NP")} [{d:x16}]";
    }
}
