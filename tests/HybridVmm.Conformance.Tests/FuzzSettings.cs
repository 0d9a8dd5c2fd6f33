namespace HybridVmm.Conformance.Tests;

/// <summary>
/// Volume and seed of the differential runs. CI uses the defaults; a soak run sets
/// HYBRIDVMM_FUZZ_INSTRUCTIONS (cases for the Unicorn run) and HYBRIDVMM_FUZZ_SEED (decimal or 0x hex).
/// HYBRIDVMM_FUZZ_CASE makes each test replay just that case (or sequence) of the seed.
/// </summary>
internal static class FuzzSettings
{
    public const ulong DefaultSeed = 0x48796272_69645600; // fixed: CI runs are reproducible
    public const long DefaultUnicornCases = 1_000_000;
    public const long DefaultNativeCases = 500_000;

    public static ulong Seed => ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_SEED")) ?? DefaultSeed;
    public static long UnicornCases => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_INSTRUCTIONS")) ?? DefaultUnicornCases;
    public static long NativeCases => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_NATIVE_INSTRUCTIONS")) ?? DefaultNativeCases;
    public static long Sequences => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_SEQUENCES")) ?? DefaultSequences;
    public const long DefaultSequences = 20_000;
    /// <summary>HYBRIDVMM_FUZZ_PAGING and HYBRIDVMM_FUZZ_SEGMENTATION: cases of the system-state fuzzers (SystemStateDifferentialTests).</summary>
    public static long PagingCases => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_PAGING")) ?? DefaultPagingCases;
    public static long SegmentationCases => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_SEGMENTATION")) ?? DefaultSegmentationCases;
    public const long DefaultPagingCases = 6_000, DefaultSegmentationCases = 10_000;
    /// <summary>HYBRIDVMM_FUZZ_SYSTEM: cases of CoreMatchesUnicornOnSystemInstructions.</summary>
    public static long SystemInstructionCases => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_SYSTEM")) ?? DefaultSystemInstructionCases;
    public const long DefaultSystemInstructionCases = 20_000;
    public static long? ReplayCase => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_CASE"));

    /// <summary>HYBRIDVMM_FUZZ_FORMS: comma-separated Iced Code names (or prefixes) to restrict a run to, for debugging.</summary>
    public static string[]? Forms => Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_FORMS")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>The forms named in HYBRIDVMM_FUZZ_FORMS: exact Code names, else every form starting with a given prefix.</summary>
    public static Fuzzing.InstructionForm[] Restrict(Fuzzing.InstructionForm[] forms)
    {
        string[]? names = Forms;
        if (names is null) return forms;
        return forms.Where(f => names.Any(n => f.Code.ToString().Equals(n, StringComparison.OrdinalIgnoreCase)
            || (!forms.Any(g => g.Code.ToString().Equals(n, StringComparison.OrdinalIgnoreCase)) && f.Code.ToString().StartsWith(n, StringComparison.OrdinalIgnoreCase)))).ToArray();
    }

    /// <summary>The replay command for one case of a test (with the environment that selected its forms).</summary>
    public static string RerunCommand(ulong seed, long index, string test, string? forms = null)
    {
        forms ??= Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_FORMS");
        string formsPart = string.IsNullOrEmpty(forms) ? "" : $"HYBRIDVMM_FUZZ_FORMS={forms} ";
        return $"HYBRIDVMM_FUZZ_SEED=0x{seed:x} {formsPart}HYBRIDVMM_FUZZ_CASE={index} dotnet test tests/HybridVmm.Conformance.Tests --filter Name={test}";
    }

    private static ulong? ParseULong(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        text = text.Trim().Replace("_", "");
        return text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? Convert.ToUInt64(text[2..], 16)
            : ulong.Parse(text);
    }
}
