using HybridVmm.Conformance.Tests.Fuzzing.SystemState;
using HybridVmm.Testing.Reference;

namespace HybridVmm.Conformance.Tests;

/// <summary>
/// Differential fuzzing of paging and segmentation state, faulting cases included, against Unicorn 2 (QEMU TCG):
/// random page tables and descriptor tables, the same set-up program on both CPUs, then one or two test instructions
/// compared after each step (vector, error code, CR2, registers, flags, selectors, control registers) and all of memory
/// at the end (A/D bits, descriptor accessed bits, data); and the system instructions themselves (descriptor
/// inspection, LLDT/LTR, the table and machine-status stores and loads, CLI/STI/POPF, port I/O, control registers,
/// INT n through random IDTs) with GDTR, IDTR, LDTR and TR compared too. Zero differences on defined state; the accepted
/// Unicorn deviations are narrow and listed in docs/conformance.md. With HYBRIDVMM_FUZZ_CASE set, each test replays that case.
/// </summary>
[NonParallelizable]
public class SystemStateDifferentialTests
{
    [Test]
    public void CoreMatchesUnicornOnPagingState()
    {
        RunAndAssertNoMismatch(new PagingCaseGenerator(FuzzSettings.Seed ^ 0x9A61).Generate, nameof(CoreMatchesUnicornOnPagingState), SystemDeviations.Paging, FuzzSettings.PagingCases);
    }

    [Test]
    public void CoreMatchesUnicornOnSegmentationState()
    {
        RunAndAssertNoMismatch(new SegmentationCaseGenerator(FuzzSettings.Seed ^ 0x5E61).Generate, nameof(CoreMatchesUnicornOnSegmentationState), SystemDeviations.Segmentation, FuzzSettings.SegmentationCases);
    }

    [Test]
    public void CoreMatchesUnicornOnSystemInstructions()
    {
        RunAndAssertNoMismatch(new SystemInstructionCaseGenerator(FuzzSettings.Seed ^ 0x5157).Generate, nameof(CoreMatchesUnicornOnSystemInstructions), SystemDeviations.SystemInstructions, FuzzSettings.SystemInstructionCases);
    }

    /// <summary>Runs the CI volume of <paramref name="cases"/> (or the one case HYBRIDVMM_FUZZ_CASE names), prints the report and requires no mismatch.</summary>
    private static void RunAndAssertNoMismatch(Action<long, SystemCase> generate, string test,
        Func<SystemCase, Iced.Intel.Instruction, SystemOutcome, SystemOutcome, SystemOutcome, string?>? deviation, long cases)
    {
        using SystemStateFuzzer fuzzer = Create(generate, test, deviation);
        SystemFuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, cases);
        Print(fuzzer, report);
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
    }

    private static void Print(SystemStateFuzzer fuzzer, SystemFuzzReport report)
    {
        TestContext.Out.WriteLine(report.Summary());
        TestContext.Out.WriteLine("Exceptions (Unicorn's outcome): " + report.ExceptionSummary());
        TestContext.Out.WriteLine(fuzzer.ErrorCodesAvailable ? "Error codes compared (read from Unicorn's saved CPU context)." : "Unicorn's error codes unavailable: not compared.");
        foreach (var (rule, n) in report.KnownDeviations) TestContext.Out.WriteLine($"Known Unicorn deviation ({n:N0} cases): {rule}");
    }

    private static SystemStateFuzzer Create(Action<long, SystemCase> generate, string test,
        Func<SystemCase, Iced.Intel.Instruction, SystemOutcome, SystemOutcome, SystemOutcome, string?>? deviation)
    {
        ulong seed = FuzzSettings.Seed;
        return SystemStateFuzzer.TryCreate(generate, index => FuzzSettings.RerunCommand(seed, index, test), deviation)
            ?? throw new IgnoreException(Unicorn.UnavailableReason ?? "Unicorn unavailable");
    }
}
