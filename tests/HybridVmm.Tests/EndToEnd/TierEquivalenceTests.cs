using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// The translator changes the speed and nothing else: each sample guest run with <c>--tier interp</c> and with
/// <c>--tier jit</c> prints the same bytes, ends with the same status, and writes the same trace, byte for byte
/// (every exit, at the same instruction count and virtual time).
/// </summary>
public class TierEquivalenceTests
{
    public static IEnumerable<TestCaseData> Guests()
    {
        foreach (string guest in new[] { "cpu", "paging", "segments", "rings", "tasks", "realmode", "pic", "apic", "clock", "fault", "iobench" })
        {
            yield return new TestCaseData(guest, Array.Empty<string>()).SetArgDisplayNames(guest);
        }
        yield return new TestCaseData("platform", new[] { "--memory", "64M", "--rtc-base", "2024-02-29T23:58:00", "--append", "probe me" })
            .SetArgDisplayNames("platform");
    }

    [TestCaseSource(nameof(Guests))]
    public void BothTiersPrintAndTraceTheSame(string guest, string[] options)
    {
        string dir = Directory.CreateTempSubdirectory("hvtier").FullName;
        try
        {
            CliProcess.Result interp = Run("interp", guest, options, Path.Combine(dir, "interp.trace"));
            CliProcess.Result jit = Run("jit", guest, options, Path.Combine(dir, "jit.trace"));
            Assert.Multiple(() =>
            {
                Assert.That(interp.Stdout.Length, Is.GreaterThan(0), "the guest printed something");
                Assert.That(jit.ExitCode, Is.EqualTo(interp.ExitCode), "exit status");
                Assert.That(jit.Stdout, Is.EqualTo(interp.Stdout), "guest output");
                Assert.That(jit.Stderr, Is.EqualTo(interp.Stderr), "the simulator's messages");
                Assert.That(File.ReadAllBytes(Path.Combine(dir, "jit.trace")), Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, "interp.trace"))),
                    "the trace, byte for byte");
            });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static CliProcess.Result Run(string tier, string guest, string[] options, string trace) =>
        CliProcess.Run(["--tier", tier, "run", Repository.GuestElf(guest), .. options, "--trace", trace]);

    [Test]
    public void AnUnknownTierIsRefusedWithTheUsageStatus()
    {
        CliProcess.Result result = CliProcess.Run("--tier", "fast", "run", Repository.GuestElf("hello"));
        Assert.That(result.ExitCode, Is.EqualTo(64));
        Assert.That(result.Stderr, Does.Contain("--tier").And.Not.Contain("   at "));
    }
}
