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
        ulong seed = FuzzSettings.Seed ^ 0x9A61;
        var generator = new PagingCaseGenerator(seed);
        using SystemStateFuzzer fuzzer = Create(generator.Generate, nameof(CoreMatchesUnicornOnPagingState), SystemDeviations.Paging);
        SystemFuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, FuzzSettings.PagingCases);
        Print(fuzzer, report);
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
    }

    [Test]
    public void CoreMatchesUnicornOnSegmentationState()
    {
        ulong seed = FuzzSettings.Seed ^ 0x5E61;
        var generator = new SegmentationCaseGenerator(seed);
        using SystemStateFuzzer fuzzer = Create(generator.Generate, nameof(CoreMatchesUnicornOnSegmentationState), SystemDeviations.Segmentation);
        SystemFuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, FuzzSettings.SegmentationCases);
        Print(fuzzer, report);
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
    }

    [Test]
    public void CoreMatchesUnicornOnSystemInstructions()
    {
        ulong seed = FuzzSettings.Seed ^ 0x5157;
        var generator = new SystemInstructionCaseGenerator(seed);
        using SystemStateFuzzer fuzzer = Create(generator.Generate, nameof(CoreMatchesUnicornOnSystemInstructions), SystemDeviations.SystemInstructions);
        SystemFuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, FuzzSettings.SystemInstructionCases);
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
