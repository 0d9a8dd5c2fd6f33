using HybridVmm.Conformance.Tests.Fuzzing;

namespace HybridVmm.Conformance.Tests;

/// <summary>
/// Differential fuzzing of the x86 core against Unicorn 2 (QEMU TCG) in 32-bit protected mode:
/// 1,000,000 random instructions per CI run from every supported form, edge-biased inputs, zero
/// differences allowed on defined state. See docs/conformance.md.
/// </summary>
[NonParallelizable]
public class UnicornDifferentialTests
{
    [Test]
    public void CoreMatchesUnicornOnRandomInstructions()
    {
        using UnicornFuzzer fuzzer = UnicornFuzzer.TryCreate(FuzzSettings.Seed, FuzzSettings.Restrict(SupportedForms.All))
            ?? throw new IgnoreException(Reference.Unicorn.UnavailableReason ?? "Unicorn unavailable");
        FuzzReport report = fuzzer.Run(0, FuzzSettings.UnicornCases);
        TestContext.Out.WriteLine($"{SupportedForms.All.Length} supported forms; candidate forms that raise #UD on the core: {string.Join(", ", SupportedForms.Unsupported.Select(f => f.Code))}");
        TestContext.Out.WriteLine(report.Summary("Unicorn " + "2 (QEMU TCG)"));
        TestContext.Out.WriteLine("Differences on SDM-undefined flags only (masked):");
        TestContext.Out.WriteLine(report.UndefinedSummary());
        foreach (var (rule, n) in report.KnownDeviations) TestContext.Out.WriteLine($"Known Unicorn deviation ({n:N0} cases): {rule}");
        if (report.Mismatches > 0) TestContext.Out.WriteLine("Mismatches by form:\n" + report.MismatchSummary());
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
        Assert.That(report.NotEncodable, Is.LessThan(report.Cases / 100), "the generator should encode nearly every case");
    }

    [Test]
    public void EverySupportedFormIsExercised()
    {
        using UnicornFuzzer fuzzer = UnicornFuzzer.TryCreate(FuzzSettings.Seed ^ 1, SupportedForms.All)
            ?? throw new IgnoreException(Reference.Unicorn.UnavailableReason ?? "Unicorn unavailable");
        var failures = new List<string>();
        long total = 0;
        foreach (InstructionForm form in SupportedForms.All)
        {
            FuzzReport report = fuzzer.Run(0, 64, form);
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
        using SequenceFuzzer fuzzer = SequenceFuzzer.TryCreate(FuzzSettings.Seed ^ 0x5e9, FuzzSettings.Restrict(SupportedForms.All))
            ?? throw new IgnoreException(Reference.Unicorn.UnavailableReason ?? "Unicorn unavailable");
        FuzzReport report = fuzzer.Run(0, FuzzSettings.Sequences);
        TestContext.Out.WriteLine($"{FuzzSettings.Sequences:N0} sequences of up to {SequenceFuzzer.Length} instructions: " + report.Summary("Unicorn 2 (QEMU TCG)")
            + $" ({report.Exceptions:N0} sequences ended early by an exception or fault)");
        TestContext.Out.WriteLine("Differences on SDM-undefined flags only (masked, then resynchronised):\n" + report.UndefinedSummary());
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
    }

    [Test]
    public void ReplaysOneCase()
    {
        long? index = FuzzSettings.ReplayCase;
        if (index is null) Assert.Ignore("set HYBRIDVMM_FUZZ_CASE (and HYBRIDVMM_FUZZ_SEED) to replay one case");
        using UnicornFuzzer fuzzer = UnicornFuzzer.TryCreate(FuzzSettings.Seed, FuzzSettings.Restrict(SupportedForms.All))
            ?? throw new IgnoreException(Reference.Unicorn.UnavailableReason ?? "Unicorn unavailable");
        FuzzReport report = fuzzer.Run(index.Value, 1);
        TestContext.Out.WriteLine(report.Summary("Unicorn"));
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
    }
}
