using System.Text;
using System.Text.RegularExpressions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// kvm-unit-tests, the KVM project's own test suite, built for i386 from its public sources, run under
/// <c>hybridvmm run</c> and under QEMU TCG with the arguments of its <c>x86/unittests.cfg</c>, as its
/// <c>run_tests.sh</c> runs them. The suite is not vendored: this workplace forbids committing its code or a script
/// that builds it, so the test runs where a build exists (<c>HYBRIDVMM_KVM_UNIT_TESTS=/path/to/kvm-unit-tests</c>,
/// after <c>./configure --arch=i386 &amp;&amp; make</c>) and is otherwise ignored. docs/conformance.md has the table.
/// </summary>
/// <remarks>
/// A verdict is the suite's own, from the test's exit status through isa-debug-exit (<see cref="Verdict"/>), and
/// TIMEOUT past the test's <c>timeout</c> (90 s by default). The
/// test requires every test that passed here before (<see cref="PassingBefore"/>) to pass still.
/// </remarks>
[NonParallelizable]
public class KvmUnitTests
{
    /// <summary>The tests this build passed when the table in docs/conformance.md was made: a regression fails the run.</summary>
    private static readonly string[] PassingBefore =
    [
        "cmpxchg8b", "setjmp", "smptest", "smptest3", "eventinj", "taskswitch", "tsc", "umip", "vmexit_mov_from_cr8",
        "vmexit_mov_to_cr8", "vmexit_ipi", "vmexit_tscdeadline", "vmexit_tscdeadline_immed", "realmode", "smap", "vmexit_inl_pmtimer",
        "vmexit_ipi_halt", "vmexit_ple_round_robin", "sieve", "vmexit_cpuid", "vmexit_cr0_wp", "vmexit_cr4_pge", "la57",
        "hyperv_synic", "hyperv_connections", "hyperv_stimer", "hyperv_stimer_direct",
    ];

    private sealed record Entry(string Name, string File, int Smp, string Append, string ExtraParams, TimeSpan Timeout);

    [Test]
    [Explicit("needs a kvm-unit-tests build: HYBRIDVMM_KVM_UNIT_TESTS=/path/to/kvm-unit-tests")]
    public void EveryI386TestGetsTheVerdictTheTableRecords()
    {
        string? root = Environment.GetEnvironmentVariable("HYBRIDVMM_KVM_UNIT_TESTS");
        if (root is null || !File.Exists(Path.Combine(root, "x86", "unittests.cfg"))) Assert.Ignore("HYBRIDVMM_KVM_UNIT_TESTS does not name a built kvm-unit-tests");
        string qemu = QemuReference.Require();
        string hybridvmm = Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll");
        var table = new StringBuilder("| test | QEMU TCG | HybridVmm | first line of HybridVmm's failure |\n|---|---|---|---|\n");
        var passing = new List<string>();
        foreach (Entry e in Parse(File.ReadAllText(Path.Combine(root!, "x86", "unittests.cfg"))))
        {
            string flat = Path.Combine(root!, "x86", e.File);
            if (!File.Exists(flat)) continue; // a 64-bit-only test, not built for i386
            List<string> qemuArgs = ["-nodefaults", "-device", "pc-testdev", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4",
                "-display", "none", "-serial", "stdio", "-device", "pci-testdev", "-machine", "accel=tcg", "-kernel", flat,
                "-smp", e.Smp.ToString(), .. SplitArguments(e.ExtraParams)];
            (string qemuVerdict, _) = Verdict(CliProcess.TryRunProgram(qemu, qemuArgs, root!, e.Timeout), qemuStyle: true);
            List<string> ours = [hybridvmm, "run", flat, "--memory", "128M", "--cpus", e.Smp.ToString()]; // QEMU's default RAM, its -smp
            if (e.Append.Length > 0) ours.AddRange(["--append", e.Append]);
            // The devices unittests.cfg adds that HybridVmm offers beyond its default set (QEMU's hyperv-testdev).
            foreach (Match device in Regex.Matches(e.ExtraParams, @"-device\s+(?<d>hyperv-testdev)\b")) ours.AddRange(["--device", device.Groups["d"].Value]);
            (string ourVerdict, string why) = Verdict(CliProcess.TryRunProgram("dotnet", ours, root!, e.Timeout), qemuStyle: false);
            if (ourVerdict == "PASS") passing.Add(e.Name);
            table.Append($"| {e.Name} | {qemuVerdict} | {ourVerdict} | {why.Replace("|", "\\|")} |\n");
            TestContext.Out.WriteLine($"{e.Name}: QEMU {qemuVerdict}, HybridVmm {ourVerdict} {why}");
        }

        TestContext.Out.WriteLine(table.ToString());
        if (Environment.GetEnvironmentVariable("HYBRIDVMM_KVM_UNIT_TESTS_REPORT") is { } report) File.WriteAllText(report, table.ToString());
        Assert.That(passing, Is.SupersetOf(PassingBefore), "a test that passed before fails now");
    }

    /// <summary>The sections of unittests.cfg that run on i386 under TCG: not x86_64-only, not KVM-only.</summary>
    private static IEnumerable<Entry> Parse(string cfg)
    {
        foreach (Match section in Regex.Matches(cfg, @"^\[(?<name>[^\]]+)\]\s*\n(?<body>(?:(?!^\[).*\n?)*)", RegexOptions.Multiline))
        {
            var fields = new Dictionary<string, string>();
            string? continued = null;
            foreach (string raw in section.Groups["body"].Value.Split('\n'))
            {
                string line = raw.TrimEnd();
                if (line.StartsWith('#') || line.Length == 0) continue;
                int eq = line.IndexOf('=');
                if (eq > 0 && !char.IsWhiteSpace(line[0])) { continued = line[..eq].Trim(); fields[continued] = line[(eq + 1)..].Trim(); }
                else if (continued is not null) fields[continued] += " " + line.Trim();
            }
            if (fields.GetValueOrDefault("arch") == "x86_64" || fields.GetValueOrDefault("accel") == "kvm" || !fields.ContainsKey("file")) continue;
            // extra_params in older releases of the suite, qemu_params in newer ones.
            string extra = (fields.GetValueOrDefault("extra_params", "") + " " + fields.GetValueOrDefault("qemu_params", "")).Trim();
            Match append = Regex.Match(extra, @"-append\s+(?:'(?<a>[^']*)'|""(?<a>[^""]*)""|(?<a>\S+))");
            string args = fields.GetValueOrDefault("test_args", "").Trim('"', '\'');
            string appendText = append.Success ? append.Groups["a"].Value : args;
            string qemuExtra = append.Success || args.Length == 0 ? extra : $"{extra} -append '{args}'";
            int smp = int.TryParse(fields.GetValueOrDefault("smp", "1"), out int n) ? n : 1;
            TimeSpan timeout = TimeSpan.FromSeconds(int.TryParse(fields.GetValueOrDefault("timeout", "90").TrimEnd('s'), out int t) ? t : 90);
            yield return new Entry(section.Groups["name"].Value, fields["file"], smp, appendText, qemuExtra.Trim(), timeout);
        }
    }

    private static IEnumerable<string> SplitArguments(string text)
    {
        foreach (Match m in Regex.Matches(text, @"'(?<a>[^']*)'|""(?<a>[^""]*)""|(?<a>\S+)")) yield return m.Groups["a"].Value;
    }

    /// <summary>
    /// The suite's verdict from the exit status as QEMU reports it: isa-debug-exit turns <c>out 0xF4, v</c> into status
    /// <c>(v &lt;&lt; 1) | 1</c>, so 1 is PASS (v = 0) and 77 is SKIP (report_summary's 77 &gt;&gt; 1); hybridvmm exits with v.
    /// </summary>
    private static (string Verdict, string Why) Verdict((CliProcess.Result Result, bool TimedOut) run, bool qemuStyle)
    {
        if (run.TimedOut) return ("TIMEOUT", "");
        int status = run.Result.ExitCode;
        // QEMU that refuses its command line (TCG and "-cpu host", which the Hyper-V tests ask for) also exits with 1.
        string? qemuError = qemuStyle ? run.Result.Stderr.Split('\n').FirstOrDefault(l => l.StartsWith("qemu-system-") && !l.Contains(": warning: ")) : null;
        if (qemuError is not null && status == 1) return ("ERROR", qemuError.Trim());
        int asQemu = qemuStyle ? status : (status << 1) | 1;
        string firstFailure = run.Result.Text.Split('\n').FirstOrDefault(l => l.StartsWith("FAIL")) ?? run.Result.Stderr.Split('\n').FirstOrDefault(l => l.Length > 0) ?? "";
        return asQemu switch
        {
            1 => ("PASS", ""),
            77 => ("SKIP", ""),
            _ => ("FAIL", firstFailure.Trim()),
        };
    }
}
