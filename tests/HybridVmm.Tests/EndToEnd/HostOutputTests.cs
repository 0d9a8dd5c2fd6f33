using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Issue 14, defects 11 and 12: the host's own output failing (a full disk, a closed stdout) is one line and the
/// status 73, not an internal error; a trace file stops at its size limit with a line saying so.
/// </summary>
public class HostOutputTests
{
    private static string Hybridvmm => Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll");

    [Test]
    public void ATraceFileOnAFullDiskIsCannotWrite() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--trace", "/dev/full"), ExitStatus.CannotWrite,
            "cannot write trace file '/dev/full': No space left on device");

    [TestCase("> /dev/full", "No space left on device", TestName = "The guest's output to a full disk is CannotWrite")]
    [TestCase(">&-", "Bad file descriptor", TestName = "The guest's output to a closed stdout is CannotWrite")]
    public void TheGuestsOutputFailingIsCannotWrite(string redirection, string reason) =>
        InputBoundsTests.AssertRefused(Shell($"run '{Repository.GuestElf("hello")}' {redirection}"), ExitStatus.CannotWrite, $"cannot write standard output: {reason}");

    [Test]
    public void TheDefaultScenariosOutputToAFullDiskIsCannotWrite() =>
        InputBoundsTests.AssertRefused(Shell("> /dev/full"), ExitStatus.CannotWrite, "cannot write standard output: No space left on device");

    [Test]
    public void ServesTraceOnAFullDiskIsCannotWriteAfterTheGuestsRan()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-full-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string config = Path.Combine(dir, "vms.json");
            File.WriteAllText(config, """{ "HybridVmm": { "ExitWhenGuestsStop": true, "Trace": "/dev/full", "Vms": [ { "Name": "a", "Image": "embedded:hello", "Memory": "8M" } ] } }""");
            CliProcess.Result result = CliProcess.RunIn(dir, "serve", "--config", config);
            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.CannotWrite), result.Stderr);
                Assert.That(result.Text, Does.Contain("a         | Hello from a HybridVmm guest!"), "the guest ran");
                Assert.That(result.Stderr, Does.EndWith("hybridvmm: error: cannot write trace file '/dev/full': No space left on device : '/dev/full'\n"));
                Assert.That(result.Stderr, Does.Not.Contain("   at "));
            });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void ATraceStopsAtItsLimitWithALineSayingSoAndTheRunGoesOn()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.trace");
        try
        {
            CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("hello"), "--trace", path, "--trace-limit", "2K");
            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.Zero, "the guest's own status");
                Assert.That(result.Text, Does.Contain("Hello from a HybridVmm guest!"));
                Assert.That(result.Stderr, Is.EqualTo($"hybridvmm: warning: trace file '{path}' reached its limit of 2048 bytes (--trace-limit); later events were not written\n"));
                Assert.That(File.ReadAllLines(path).Last(), Is.EqualTo("# trace limit of 2048 bytes reached: later events are not written"));
                Assert.That(new FileInfo(path).Length, Is.LessThanOrEqualTo(2048 + 100));
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void AMalformedTraceLimitIsAUsageError() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--trace-limit", "lots"), ExitStatus.Usage, "--trace-limit: 'lots' is not a size");

    /// <summary>hybridvmm with its stdout redirected by the shell (stderr still collected).</summary>
    private static CliProcess.Result Shell(string argumentsAndRedirection) =>
        CliProcess.RunProgram("sh", ["-c", $"exec dotnet '{Hybridvmm}' {argumentsAndRedirection}"], Repository.Root);
}
