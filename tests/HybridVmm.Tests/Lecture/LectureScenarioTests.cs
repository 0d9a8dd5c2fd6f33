using ApprovalTests;
using HybridVmm.Samples.Lecture;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Lecture;

/// <summary>
/// The lecture's scenario programs, run as a user runs them. Each returns 0 only if its own checks held
/// (outputs identical across save/restore and migration, isolation intact, ...); its deterministic report is
/// snapshot-approved, while wall-clock measurements go to a separate writer and are not compared.
/// </summary>
public class LectureScenarioTests
{
    /// <summary>Needs Debian's kernel and BusyBox (samples/linux), which .ci/run fetches; a local run without them is ignored.</summary>
    [Test]
    public async Task OsDiversity()
    {
        if (OsDiversityScenario.LinuxImages() is null)
        {
            const string why = "samples/linux/debian is missing: run samples/linux/fetch-debian.sh and make-initramfs.sh";
            if (Environment.GetEnvironmentVariable("CI") is not null) Assert.Fail(why + " (.ci/run should have)");
            Assert.Ignore(why);
        }
        // Debian replaces linux-image-686's kernel with each point release (fetch-debian.sh takes the current one), so
        // the release /init prints is checked against the kernel that was fetched, then kept out of the approved text.
        string report = await Run(OsDiversityScenario.RunAsync);
        string versions = File.ReadAllText(Path.Combine(Path.GetDirectoryName(OsDiversityScenario.LinuxImages()!.Value.Kernel)!, "VERSIONS"));
        string release = System.Text.RegularExpressions.Regex.Match(versions, @"^linux-image-(\S+-686) ", System.Text.RegularExpressions.RegexOptions.Multiline).Groups[1].Value;
        Assert.That(release, Is.Not.Empty, $"no linux-image package in VERSIONS:\n{versions}");
        Assert.That(report, Does.Contain($"on Linux {release}\n"), "the kernel that booted is the one fetch-debian.sh fetched");
        Approvals.Verify(report.Replace($"on Linux {release}\n", "on Linux (the fetched linux-image-686 release)\n", StringComparison.Ordinal));
    }

    [Test]
    public async Task Encapsulation() => Approvals.Verify(await Run(EncapsulationScenario.RunAsync));

    [Test]
    public async Task Provisioning() => Approvals.Verify(await Run(ProvisioningScenario.RunAsync));

    [Test]
    public async Task Migration() => Approvals.Verify(await Run(MigrationScenario.RunAsync));

    [Test]
    public async Task HighAvailabilityOffline() => Approvals.Verify(await Run(OfflineHighAvailabilityScenario.RunAsync));

    /// <summary>Real processes: Redis and three serve --cluster hosts, one of them killed.</summary>
    [Test]
    [NonParallelizable]
    public async Task HighAvailabilityOnACluster()
    {
        IgnoreWithoutRedis();
        Approvals.Verify(await Run(ClusterHighAvailabilityScenario.RunAsync));
    }

    [Test]
    public async Task LoadBalancingOffline() => Approvals.Verify(await Run(OfflineLoadBalancingScenario.RunAsync));

    /// <summary>Real processes: Redis and three serve --cluster hosts (samples/Lecture/ClusterLab.cs); .ci/run installs redis-server.</summary>
    [Test]
    [NonParallelizable]
    public async Task LoadBalancingOnACluster()
    {
        IgnoreWithoutRedis();
        Approvals.Verify(await Run(ClusterBalancingScenario.RunAsync));
    }

    private static void IgnoreWithoutRedis()
    {
        if (ClusterLab.FindRedis() is null)
        {
            const string why = "redis-server is not installed: apt-get install redis-server";
            if (Environment.GetEnvironmentVariable("CI") is not null) Assert.Fail(why + " (.ci/run should have)");
            Assert.Ignore(why);
        }
    }

    [Test]
    public async Task HostingTypes() => Approvals.Verify(await Run(HostingTypesScenario.RunAsync));

    [Test]
    public async Task Attack() => Approvals.Verify(await Run(AttackScenario.RunAsync));

    [Test]
    public async Task Multiprocessor() => Approvals.Verify(await Run(MultiprocessorScenario.RunAsync));

    /// <summary>
    /// The multiprocessor scenario's guest on the reference machine: under <c>qemu-system-i386 -smp 4</c> (its APs
    /// started by the same INIT and start-up IPIs) it prints the same totals as under HybridVmm with four vCPUs, and
    /// both are the sums of squares the scenario computes on the host.
    /// </summary>
    [Test]
    public void TheMultiprocessorGuestPrintsUnderQemuWhatItPrintsHere()
    {
        string image = Path.Combine(Path.GetTempPath(), $"hybridvmm-smp-{Guid.NewGuid():N}.elf");
        File.WriteAllBytes(image, SmpWorkGuest.Build(MultiprocessorScenario.Processors));
        try
        {
            string qemu = QemuReference.RunLinux(image, "", "32M", processors: MultiprocessorScenario.Processors);
            CliProcess.Result ours = CliProcess.Run("run", image, "--cpus", MultiprocessorScenario.Processors.ToString(), "--memory", "8M");
            string expected = string.Concat(Enumerable.Range(0, SmpWorkGuest.Rounds).Select(r => MultiprocessorScenario.ExpectedTotal(r) + "\n"));
            Assert.Multiple(() =>
            {
                Assert.That(qemu, Is.EqualTo(expected), "QEMU -smp 4");
                Assert.That(ours.ExitCode, Is.Zero, ours.Stderr);
                Assert.That(ours.Text, Is.EqualTo(qemu));
            });
        }
        finally
        {
            File.Delete(image);
        }
    }

    /// <summary>Runs a scenario; Approvals.Verify stays in the test method itself, where ApprovalTests looks for the test's name.</summary>
    private static async Task<string> Run(Func<TextWriter, TextWriter, Task<int>> scenario)
    {
        var output = new StringWriter { NewLine = "\n" };
        int status = await scenario(output, new StringWriter());
        Assert.That(status, Is.Zero, output.ToString());
        return output.ToString();
    }
}
