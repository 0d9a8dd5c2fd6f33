namespace HybridVmm.Conformance.Tests;

/// <summary>
/// Volume and seed of the differential runs. CI uses the defaults; a soak run sets
/// HYBRIDVMM_FUZZ_INSTRUCTIONS (cases for the Unicorn run) and HYBRIDVMM_FUZZ_SEED (decimal or 0x hex).
/// HYBRIDVMM_FUZZ_CASE replays one case of that seed (ReplaysOneCase).
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
    public static long? ReplayCase => (long?)ParseULong(Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_CASE"));

    /// <summary>HYBRIDVMM_FUZZ_FORMS: comma-separated Iced Code names (or prefixes) to restrict a run to, for debugging.</summary>
    public static string[]? Forms => Environment.GetEnvironmentVariable("HYBRIDVMM_FUZZ_FORMS")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public static Fuzzing.InstructionForm[] Restrict(Fuzzing.InstructionForm[] forms)
    {
        string[]? names = Forms;
        return names is null ? forms : forms.Where(f => names.Any(n => f.Code.ToString().StartsWith(n, StringComparison.OrdinalIgnoreCase))).ToArray();
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
