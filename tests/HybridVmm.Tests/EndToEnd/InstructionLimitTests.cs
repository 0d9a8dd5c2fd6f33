using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// <c>--max-instructions</c> stops a runaway guest in <c>clone</c>, <c>bench</c> and <c>compare-types</c> as it does
/// in <c>run</c>: status 124 and one line naming the limit; a negative limit is a usage error (64).
/// </summary>
public class InstructionLimitTests
{
    [Test]
    public void BenchStopsAGuestAtTheLimitWith124()
    {
        CliProcess.Result result = CliProcess.Run("bench", "--runs", "1", "--max-instructions", "20000");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.InstructionLimit), result.Stderr);
        Assert.That(result.Stderr, Does.Contain("reached the instruction limit (20000)"));
    }

    [Test]
    public void CloneStopsATemplateThatNeverAsksToBeFrozenAtTheLimitWith124()
    {
        // The cpu guest never writes to the provisioning port: without a limit it runs to its end and clone refuses it (65).
        CliProcess.Result result = CliProcess.Run("clone", "--guest", "cpu", "--count", "2", "--memory", "16M", "--max-instructions", "20000");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.InstructionLimit), result.Stderr);
        Assert.That(result.Stderr, Does.Contain("reached the instruction limit (20000)"));
    }

    [Test]
    public void CompareTypesStopsEachConfigurationAtTheLimitWith124()
    {
        CliProcess.Result result = CliProcess.Run("compare-types", "--max-instructions", "20000");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.InstructionLimit), result.Stderr);
            Assert.That(result.Stderr, Does.Contain("reached the instruction limit (20000)"));
            Assert.That(result.Text, Does.Contain("Hybrid").Or.Contain("hybrid"), "the table of the cut-short runs is still printed");
        });
    }

    [TestCase("bench")]
    [TestCase("clone")]
    [TestCase("compare-types")]
    public void ANegativeLimitIsAUsageError(string command)
    {
        CliProcess.Result result = CliProcess.Run(command, "--max-instructions", "-5");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Usage), result.Stderr);
        Assert.That(result.Stderr, Does.Contain("--max-instructions must be zero or positive"));
    }
}
