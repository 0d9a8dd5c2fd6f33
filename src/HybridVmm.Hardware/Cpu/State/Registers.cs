namespace HybridVmm.Hardware.Cpu;

/// <summary>General-purpose registers in their x86 encoding order (Intel SDM Vol. 2A, table 2-2).</summary>
public enum Gpr
{
    Eax = 0, Ecx = 1, Edx = 2, Ebx = 3, Esp = 4, Ebp = 5, Esi = 6, Edi = 7,
}

/// <summary>EFLAGS bits (Intel SDM Vol. 1, 3.4.3).</summary>
[Flags]
public enum EFlags : uint
{
    CF = 1u << 0,
    Reserved1 = 1u << 1,
    PF = 1u << 2,
    AF = 1u << 4,
    ZF = 1u << 6,
    SF = 1u << 7,
    TF = 1u << 8,
    IF = 1u << 9,
    DF = 1u << 10,
    OF = 1u << 11,
    ID = 1u << 21,
}

/// <summary>Segment registers in their encoding order (Intel SDM Vol. 2A, 2.1.5, the sreg field).</summary>
public enum Sreg
{
    Es = 0, Cs = 1, Ss = 2, Ds = 3, Fs = 4, Gs = 5,
}

/// <summary>CR0 bits (Intel SDM Vol. 3A, 2.5).</summary>
[Flags]
public enum Cr0Flags : uint
{
    PE = 1u << 0,
    MP = 1u << 1,
    EM = 1u << 2,
    TS = 1u << 3,
    ET = 1u << 4,
    NE = 1u << 5,
    WP = 1u << 16,
    AM = 1u << 18,
    NW = 1u << 29,
    CD = 1u << 30,
    PG = 1u << 31,
}

/// <summary>CR4 bits (Intel SDM Vol. 3A, 2.5) that this core knows.</summary>
[Flags]
public enum Cr4Flags : uint
{
    PSE = 1u << 4,
    PAE = 1u << 5,
    PGE = 1u << 7,
    /// <summary>The OS saves state with FXSAVE/FXRSTOR (SDM Vol. 3A, 2.5). Without SSE it changes nothing else here.</summary>
    OSFXSR = 1u << 9,
    /// <summary>Supervisor-mode execution prevention: no fetch at CPL 0-2 from a page user mode can reach (SDM Vol. 3A, 4.6).</summary>
    SMEP = 1u << 20,
    /// <summary>Supervisor-mode access prevention: no data access at CPL 0-2 to such a page while EFLAGS.AC=0 (SDM Vol. 3A, 4.6).</summary>
    SMAP = 1u << 21,
}
