namespace HybridVmm.Conformance.Tests.Fuzzing.SystemState;

/// <summary>
/// Guest-physical layout of a system-state case (both CPUs see the same 1 MiB at physical 0). A case is a memory
/// image of the first <see cref="ImageSize"/> bytes (set-up code, descriptor tables, page tables, data and code
/// frames), a set-up program that installs the system state from a flat ring-0 start, the registers the test
/// instructions start from, and 1-2 test instructions.
/// </summary>
/// <remarks>
/// Unicorn 2.0.1 checks a guest's page-table rights and sets its A/D bits, but then maps every linear page to the
/// physical page of the same number (target/i386/excp_helper.c, "Unicorn: identity map guest virtual address to
/// host virtual address"). Every present mapping the paging generator makes is therefore an identity mapping (the
/// frame is the linear page itself), in the first <see cref="MemorySize"/> bytes, which both CPUs have as RAM.
/// </remarks>
internal static class SystemLayout
{
    /// <summary>RAM of both CPUs: eight 4 MiB regions, so that eight page-directory entries can map identity pages.</summary>
    public const uint MemorySize = 0x200_0000;
    /// <summary>Test pages (data, stack, code) lie at or above this physical (= linear) address.</summary>
    public const uint TestPagesBase = 0x10_0000;

    /// <summary>The set-up program (ring 0, flat CS 0x08), its stack below <see cref="StubStackTop"/> and its data (the GDTR image).</summary>
    public const uint Stub = 0x1000, StubGdtr = 0x1C00, StubIdtr = 0x1C08, StubStackTop = 0x1F00;
    public const uint Gdt = 0x2000, Ldt = 0x3000;
    public const uint PageDirectory = 0x4000, PageTables = 0x5000;
    public const int PageTableCount = 8;
    /// <summary>Frames the test's data accesses land in (random bytes).</summary>
    public const uint DataFrames = 0x10000;
    public const int DataFrameCount = 16;
    /// <summary>The two frames of the test code (an instruction may straddle them).</summary>
    public const uint CodeFrame0 = 0x20000, CodeFrame1 = 0x21000;
    public const int ImageSize = 0x22000;
    /// <summary>
    /// The system-instruction cases run with paging off and keep their TSSs (random bytes, with an I/O permission bitmap)
    /// and their IDT in the frames the paging cases use for page tables.
    /// </summary>
    public const uint TssArea = PageTables, TssAreaSize = 0x3000, Idt = PageTables + 0x3000;

    /// <summary>Fixed GDT selectors: ring-0 flat code and data, ring-3 flat code and data, the LDT.</summary>
    public const ushort KernelCode = 0x08, KernelData = 0x10, UserCode = 0x1B, UserData = 0x23, LdtSelector = 0x28;
    /// <summary>First GDT index the generators fill with random descriptors.</summary>
    public const int FirstRandomGdtIndex = 6;
    public const int GdtEntries = 24, LdtEntries = 16;

    /// <summary>What a physical address holds, for a memory difference in a reproducer.</summary>
    public static string Describe(uint physical) => physical switch
    {
        >= Stub and < Gdt => $"set-up page +{physical - Stub:x}",
        >= Gdt and < Ldt => $"GDT entry {(physical - Gdt) / 8} (selector {(physical - Gdt) & ~7u:x2}) byte {(physical - Gdt) % 8}",
        >= Ldt and < PageDirectory => $"LDT entry {(physical - Ldt) / 8} (selector {((physical - Ldt) & ~7u) | 4:x2}) byte {(physical - Ldt) % 8}",
        >= PageDirectory and < PageTables => $"PDE {(physical - PageDirectory) / 4} (linear {(physical - PageDirectory) / 4 << 22:x8}) byte {physical % 4}",
        >= PageTables and < PageTables + PageTableCount * 0x1000 => $"page table {(physical - PageTables) >> 12} PTE {(physical & 0xFFF) / 4} byte {physical % 4}",
        >= DataFrames and < DataFrames + DataFrameCount * 0x1000 => $"data frame {(physical - DataFrames) >> 12} +{physical & 0xFFF:x3}",
        >= CodeFrame0 and < ImageSize => $"code frame +{physical - CodeFrame0:x4}",
        _ => $"test page {physical & ~0xFFFu:x8} +{physical & 0xFFF:x3}",
    };
}
