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

    /// <summary>
    /// With <c>--trace-rotate 2</c> a full trace file moves aside (trace.txt to trace.1.txt to trace.2.txt) and a new
    /// one goes on, so the latest events are always on disk and at most three files are: read oldest first, without
    /// the lines that say where each file ends, they are exactly the end of the unlimited trace.
    /// </summary>
    [TestCase("trace.txt")]
    [TestCase("trace.json")]
    public void AFullTraceFileRotatesAndTheKeptFilesAreTheEndOfTheWholeTrace(string name)
    {
        string directory = Path.Combine(Path.GetTempPath(), $"hybridvmm-rotate-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        try
        {
            string whole = Path.Combine(directory, "whole" + Path.GetExtension(name)), path = Path.Combine(directory, name);
            CliProcess.Result unlimited = CliProcess.Run("run", Repository.GuestElf("hello"), "--trace", whole, "--trace-limit", "0");
            CliProcess.Result rotated = CliProcess.Run("run", Repository.GuestElf("hello"), "--trace", path, "--trace-limit", "2K", "--trace-rotate", "2");
            string Rotated(int age) => Path.Combine(directory, $"{Path.GetFileNameWithoutExtension(name)}.{age}{Path.GetExtension(name)}");
            string[] kept = [Rotated(2), Rotated(1), path];
            Assert.Multiple(() =>
            {
                Assert.That((unlimited.ExitCode, rotated.ExitCode), Is.EqualTo((0, 0)), rotated.Stderr);
                Assert.That(rotated.Text, Is.EqualTo(unlimited.Text), "the guest's output");
                Assert.That(Directory.GetFiles(directory).Select(Path.GetFileName).Order(),
                    Is.EqualTo(new[] { Path.GetFileName(kept[0]), Path.GetFileName(kept[1]), name, Path.GetFileName(whole) }.Order()), "three files of the rotated trace, no more");
                Assert.That(rotated.Stderr, Does.Match(@"^hybridvmm: trace file '.+' reached its limit of 2048 bytes \d+ time\(s\) \(--trace-limit\); it holds the latest events, and the 2 file\(s\) before it the ones that came before \(--trace-rotate 2\)\n$"));
            });
            if (name.EndsWith(".json", StringComparison.Ordinal))
            {
                // Each file is a whole trace-event document that a viewer opens on its own.
                foreach (string file in kept)
                {
                    Assert.That(() => System.Text.Json.JsonDocument.Parse(File.ReadAllText(file)).Dispose(), Throws.Nothing, file);
                }

                return;
            }

            string[] events = [.. kept.SelectMany(File.ReadAllLines).Where(l => !l.StartsWith("# trace limit", StringComparison.Ordinal))];
            string[] all = File.ReadAllLines(whole);
            Assert.Multiple(() =>
            {
                Assert.That(kept.Take(2).Select(f => File.ReadAllLines(f).Last()), Is.All.EqualTo("# trace limit of 2048 bytes reached: later events are in the next file"));
                Assert.That(kept.Select(f => new FileInfo(f).Length), Is.All.LessThanOrEqualTo(2048 + 100));
                Assert.That(events.Length, Is.LessThan(all.Length), "the oldest events were rotated away");
                Assert.That(events, Is.EqualTo(all[^events.Length..]), "the kept files are the end of the whole trace, in order");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public void ATraceRotateOutOfRangeIsAUsageError() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--trace-rotate", "-1"), ExitStatus.Usage, "--trace-rotate must be 0 to 1000, not -1");

    [Test]
    public void AMalformedTraceLimitIsAUsageError() =>
        InputBoundsTests.AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--trace-limit", "lots"), ExitStatus.Usage, "--trace-limit: 'lots' is not a size");

    /// <summary>hybridvmm with its stdout redirected by the shell (stderr still collected).</summary>
    private static CliProcess.Result Shell(string argumentsAndRedirection) =>
        CliProcess.RunProgram("sh", ["-c", $"exec dotnet '{Hybridvmm}' {argumentsAndRedirection}"], Repository.Root);
}
