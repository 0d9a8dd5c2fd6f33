namespace HybridVmm.Testing.Cpu;

/// <summary>Status flag bits, short names for expectation tables.</summary>
public static class F
{
    public const uint CF = 0x001, PF = 0x004, AF = 0x010, ZF = 0x040, SF = 0x080, DF = 0x400, OF = 0x800;
    public const uint Status = CF | PF | AF | ZF | SF | OF;
}
