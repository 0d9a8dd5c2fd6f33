using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// EEMBC's CoreMark as a sample guest (samples/guests/coremark, docs/coremark.md), run by the real CLI: CoreMark
/// validates its own CRCs, and every line it prints equals what QEMU printed for the same ELF and command line
/// (bin/coremark.qemu.txt, bin/coremark.validation.qemu.txt), but for the timing lines, which come from RDTSC.
/// </summary>
public class CoreMarkTests
{
    /// <summary>The iteration count the committed ELF and its QEMU references use (COREMARK_ITERATIONS in the Makefile).</summary>
    private const int Iterations = 100;

    private static readonly string[] TimingLines = ["Total ticks", "Total time (secs)", "Iterations/Sec"];

    private static readonly string[] ValidationLines = ["seedcrc", "[0]crclist", "[0]crcmatrix", "[0]crcstate", "[0]crcfinal", "Correct operation validated."];

    [Test]
    public void ThePerformanceRunPrintsTheSameCrcsAsUnderQemuAndValidates()
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("coremark"));
        AssertSameAsQemu(result, "coremark.qemu.txt", "2K performance run parameters for coremark.");
    }

    [Test]
    public void TheValidationRunPrintsTheSameCrcsAsUnderQemuAndValidates()
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("coremark"), "--append", $"0x3415 0x3415 0x66 {Iterations}");
        AssertSameAsQemu(result, "coremark.validation.qemu.txt", "2K validation run parameters for coremark.");
    }

    [TestCase("12x", "not a 32-bit number: '12x'")]
    [TestCase("1 2", "wrong number of arguments")]
    [TestCase("0", "the iteration count must be at least 1")]
    [TestCase("99999999999", "not a 32-bit number: '99999999999'")]
    public void ACommandLineThePortCannotReadIsReportedAndNothingRuns(string append, string why)
    {
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("coremark"), "--append", append);
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(2), result.Stderr);
            Assert.That(result.Text, Does.StartWith($"coremark: bad command line: {why}\n"));
            Assert.That(result.Text, Does.Contain("expected [ITERATIONS] or SEED1 SEED2 SEED3 [ITERATIONS]"));
            Assert.That(result.Text, Does.Not.Contain("crcfinal"), "the benchmark must not have run");
        });
    }

    private static void AssertSameAsQemu(CliProcess.Result result, string reference, string parameters)
    {
        string[] qemu = Lines(File.ReadAllText(Path.Combine(Repository.GuestsDirectory, "bin", reference)));
        string[] ours = Lines(result.Text);
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Stderr);
            Assert.That(Validation(qemu), Has.Length.EqualTo(ValidationLines.Length), $"bin/{reference} lacks CoreMark's validation lines");
            Assert.That(qemu, Does.Contain(parameters), $"bin/{reference} is not the run it should be");
            Assert.That(Validation(ours), Is.EqualTo(Validation(qemu)), result.Stderr);
            Assert.That(WithoutTiming(ours), Is.EqualTo(WithoutTiming(qemu)), result.Stderr);
            Assert.That(ours, Does.Contain($"Iterations       : {Iterations}"));
        });
    }

    private static string[] Lines(string text) => text.Split('\n');

    private static string[] Validation(string[] lines) =>
        lines.Where(line => ValidationLines.Any(line.StartsWith)).ToArray();

    private static string[] WithoutTiming(string[] lines) =>
        lines.Where(line => !TimingLines.Any(line.StartsWith)).ToArray();
}
