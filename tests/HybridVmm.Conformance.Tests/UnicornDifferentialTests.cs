using HybridVmm.Conformance.Tests.Fuzzing;
using HybridVmm.Testing.Reference;

namespace HybridVmm.Conformance.Tests;

/// <summary>
/// Differential fuzzing of the x86 core against Unicorn 2 (QEMU TCG) in 32-bit protected mode:
/// 1,000,000 random instructions per CI run from every supported form, edge-biased inputs, zero
/// differences allowed on defined state. See docs/conformance.md. With HYBRIDVMM_FUZZ_CASE set, each test
/// replays just that case (or sequence) of the seed.
/// </summary>
[NonParallelizable]
public class UnicornDifferentialTests
{
    [Test]
    public void CoreMatchesUnicornOnRandomInstructions()
    {
        ulong seed = FuzzSettings.Seed;
        using UnicornFuzzer fuzzer = Create(seed, FuzzSettings.Restrict(SupportedForms.All), nameof(CoreMatchesUnicornOnRandomInstructions));
        FuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, FuzzSettings.UnicornCases);
        TestContext.Out.WriteLine($"{SupportedForms.All.Length} supported forms; candidate forms that raise #UD on the core: {string.Join(", ", SupportedForms.Unsupported.Select(f => f.Code))}");
        TestContext.Out.WriteLine(report.Summary("Unicorn 2 (QEMU TCG)"));
        TestContext.Out.WriteLine("Differences on SDM-undefined flags only (masked):");
        TestContext.Out.WriteLine(report.UndefinedSummary());
        foreach (var (rule, n) in report.KnownDeviations) TestContext.Out.WriteLine($"Known Unicorn deviation ({n:N0} cases): {rule}");
        if (report.Mismatches > 0) TestContext.Out.WriteLine("Mismatches by form:\n" + report.MismatchSummary());
        if (fuzzer.EncodeErrors.Count > 0) TestContext.Out.WriteLine("Not encodable, e.g.: " + string.Join("; ", fuzzer.EncodeErrors));
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
        Assert.That(report.NotEncodable, Is.LessThanOrEqualTo(report.Cases / 100), "the generator should encode nearly every case");
    }

    /// <summary>
    /// The same fuzzing with every instruction compiled by the translator (tier 1) at its first execution, for a
    /// hundredth of the cases (each case compiles a block). Forms the translator leaves to the interpreter still run
    /// there; the translated ones (moves, ALU, INC/DEC/NEG/NOT, LEA, MOVZX/MOVSX, PUSH/POP, branches, calls, returns,
    /// LEAVE) are checked against Unicorn here.
    /// </summary>
    [Test]
    public void TranslatedCodeMatchesUnicornOnRandomInstructions()
    {
        ulong seed = FuzzSettings.Seed ^ 0x7177;
        using UnicornFuzzer fuzzer = Create(seed, FuzzSettings.Restrict(SupportedForms.All), nameof(TranslatedCodeMatchesUnicornOnRandomInstructions));
        fuzzer.Core.Tier = HybridVmm.Hardware.Cpu.ExecutionTier.Jit;
        fuzzer.Core.JitHotThreshold = 1;
        fuzzer.Core.CompileInBackground = false;
        FuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, Math.Max(4096, FuzzSettings.UnicornCases / 100));
        HybridVmm.Hardware.Cpu.JitStatistics jit = fuzzer.Core.JitStatistics;
        TestContext.Out.WriteLine(report.Summary("Unicorn 2 (QEMU TCG)") + $"; translator: {jit.BlocksCompiled:N0} blocks compiled, " +
            $"{jit.InstructionsInBlocks:N0} instructions run in blocks");
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
        Assert.That(jit.InstructionsInBlocks, Is.GreaterThan(report.Cases / 10), "a good share of the cases should run translated");
    }

    [Test]
    public void EverySupportedFormIsExercised()
    {
        if (FuzzSettings.ReplayCase is not null) Assert.Ignore("replaying one case of another test");
        ulong seed = FuzzSettings.Seed ^ 1;
        var failures = new List<string>();
        long total = 0;
        foreach (InstructionForm form in SupportedForms.All)
        {
            // One fuzzer per form so the replay command can name it (HYBRIDVMM_FUZZ_FORMS=<form>).
            using UnicornFuzzer fuzzer = Create(seed, [form], nameof(CoreMatchesUnicornOnRandomInstructions), form.Code.ToString());
            FuzzReport report = fuzzer.Run(0, 64);
            total += report.Cases;
            if (report.Mismatches > 0) failures.AddRange(report.Reproducers.Take(1));
            if (report.NotEncodable == report.Cases) failures.Add($"{form}: no case could be encoded");
        }
        TestContext.Out.WriteLine($"{total:N0} cases over {SupportedForms.All.Length} forms");
        Assert.That(failures, Is.Empty, () => string.Join(Environment.NewLine, failures.Take(20)));
    }

    [Test]
    public void CoreMatchesUnicornOnInstructionSequences()
    {
        ulong seed = FuzzSettings.Seed;
        using SequenceFuzzer fuzzer = SequenceFuzzer.TryCreate(seed ^ 0x5e9, FuzzSettings.Restrict(SupportedForms.All),
                index => FuzzSettings.RerunCommand(seed, index, nameof(CoreMatchesUnicornOnInstructionSequences)))
            ?? throw new IgnoreException(Unicorn.UnavailableReason ?? "Unicorn unavailable");
        FuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, FuzzSettings.Sequences);
        TestContext.Out.WriteLine($"{FuzzSettings.Sequences:N0} sequences of up to {SequenceFuzzer.Length} instructions: " + report.Summary("Unicorn 2 (QEMU TCG)")
            + $" ({report.Exceptions:N0} sequences ended early by an exception or fault)");
        TestContext.Out.WriteLine("Differences on SDM-undefined flags only (masked, then resynchronised):\n" + report.UndefinedSummary());
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
    }

    private static UnicornFuzzer Create(ulong seed, InstructionForm[] forms, string test, string? formsForReplay = null)
    {
        UnicornFuzzer? fuzzer = UnicornFuzzer.TryCreate(seed, forms, index => FuzzSettings.RerunCommand(seed, index, test, formsForReplay));
        return fuzzer ?? throw new IgnoreException(Unicorn.UnavailableReason ?? "Unicorn unavailable");
    }
}
