namespace HybridVmm.Conformance.Tests.Fuzzing;

/// <summary>
/// SplitMix64: a tiny, allocation-free generator. Each test case gets its own stream seeded from
/// (run seed, case index), so any single case can be regenerated on its own from the reproducer line.
/// </summary>
internal struct CaseRandom
{
    private ulong _state;

    public CaseRandom(ulong seed, long caseIndex) => _state = seed ^ (0x9E3779B97F4A7C15UL * (ulong)(caseIndex + 1));

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public uint NextUInt32() => (uint)(NextUInt64() >> 32);

    /// <summary>0 ≤ result &lt; <paramref name="bound"/>.</summary>
    public int Next(int bound) => (int)((NextUInt32() * (ulong)bound) >> 32);

    public bool Chance(int percent) => Next(100) < percent;

    private static readonly uint[] Edges =
    [
        0, 1, 2, 3, 0x7f, 0x80, 0x81, 0xfe, 0xff, 0x100, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x10000,
        0x7ffffffe, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff, 0x0f0f0f0f, 0x55555555, 0xaaaaaaaa,
        0x12345678, 0x9abcdef0, 0x99, 0x09, 0x90, 0x0a, 0x1f, 0x20, 0x21, 0x3f, 0x40,
    ];

    /// <summary>A 32-bit value biased to the edges of every operand size: boundary values, mixed with random upper parts.</summary>
    public uint EdgeValue()
    {
        switch (Next(10))
        {
            case 0 or 1 or 2:
                return Edges[Next(Edges.Length)];
            case 3:
                return (NextUInt32() & 0xffffff00) | (Edges[Next(Edges.Length)] & 0xff);
            case 4:
                return (NextUInt32() & 0xffff0000) | (Edges[Next(Edges.Length)] & 0xffff);
            case 5:
                return (uint)Next(64);
            case 6:
                return (uint)-Next(64);
            case 7:
                return 1u << Next(32);
            default:
                return NextUInt32();
        }
    }
}
