using HybridVmm.Conformance.Tests.Fuzzing;

namespace HybridVmm.Conformance.Tests;

/// <summary>
/// The host processor as the final authority: register forms that behave the same in 64-bit mode run on the
/// core and natively, and must agree on defined state. Unicorn's disagreements with the hardware are
/// printed (docs/conformance.md records them). Skipped when the host is not x86-64 Linux.
/// </summary>
[NonParallelizable]
public class HardwareDifferentialTests
{
    [Test]
    public void CoreMatchesHostProcessor()
    {
        ulong seed = FuzzSettings.Seed;
        using NativeFuzzer fuzzer = NativeFuzzer.TryCreate(seed ^ 0x4e41544956, FuzzSettings.Restrict(SupportedForms.Native),
                index => FuzzSettings.RerunCommand(seed, index, nameof(CoreMatchesHostProcessor)))
            ?? throw new IgnoreException("needs an x86-64 Linux host with executable anonymous mappings");
        FuzzReport report = FuzzSettings.ReplayCase is long one ? fuzzer.Run(one, 1) : fuzzer.Run(0, FuzzSettings.NativeCases);
        TestContext.Out.WriteLine($"{SupportedForms.Native.Length} register forms checked on the host processor");
        TestContext.Out.WriteLine(report.Summary("the host processor") + $"; {fuzzer.Skipped:N0} #DE inputs not run");
        TestContext.Out.WriteLine("Core vs. host on SDM-undefined flags (masked; the core follows QEMU, see docs/undefined-flags.md):");
        TestContext.Out.WriteLine(string.Join(Environment.NewLine, fuzzer.UndefinedVsHardware.OrderBy(kv => kv.Key.ToString())
            .Select(kv => $"  {kv.Key,-8} {Comparison.FlagNames(kv.Value.Flags),-16} {kv.Value.Count,8:N0} cases")));
        if (fuzzer.HasUnicorn)
        {
            TestContext.Out.WriteLine($"Unicorn vs. host disagreements on defined state: {fuzzer.UnicornVsHardware.Count} forms");
            foreach (var (code, (count, example)) in fuzzer.UnicornVsHardware.OrderBy(kv => kv.Key.ToString()))
                TestContext.Out.WriteLine($"  {code}: {count:N0} cases; first:\n{example}");
        }
        if (fuzzer.EncodeErrors.Count > 0) TestContext.Out.WriteLine("Not encodable in 64-bit mode, e.g.: " + string.Join("; ", fuzzer.EncodeErrors));
        if (report.Mismatches > 0) TestContext.Out.WriteLine("Mismatches by form:\n" + report.MismatchSummary());
        Assert.That(report.Mismatches, Is.Zero, () => string.Join(Environment.NewLine, report.Reproducers));
    }

    /// <summary>Unicorn (QEMU TCG) sign-extends RET's imm16; the SDM and the host zero-extend it, and so does the core.</summary>
    [TestCase((ushort)0x7fff)]
    [TestCase((ushort)0x8000)]
    [TestCase((ushort)0xffff)]
    public void RetImm16IsZeroExtendedOnHostProcessor(ushort imm)
    {
        using var native = Reference.NativeCpu.TryCreate() ?? throw new IgnoreException("needs an x86-64 Linux host");
        Assert.That(native.RetImm16Displacement(imm), Is.EqualTo((long)imm));
    }
}
