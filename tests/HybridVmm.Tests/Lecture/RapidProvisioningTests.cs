using HybridVmm.Reports;
using System.Security.Cryptography;
using ApprovalTests;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Lecture;

/// <summary>Rapid provisioning: clones of a frozen template share its frames copy-on-write.</summary>
public class RapidProvisioningTests
{
    private const uint Memory = 8u << 20;

    [Test]
    public async Task ClonesShareTheTemplatesFramesAndEachSeesItsOwnIdentity()
    {
        (ProvisioningReport report, _) = await Provision(clones: 6);
        Assert.Multiple(() =>
        {
            Assert.That(report.Results.Select(r => r.Outcome), Is.All.EqualTo(StopReason.GuestExit));
            Assert.That(report.Results.Select(r => r.Output).Distinct().Count(), Is.EqualTo(6), "each clone prints its own identity and checksum");
            Assert.That(report.Results[2].Output, Does.StartWith("clone 3: checksum "));
            Assert.That(report.HostBytesUsedAfterCloning, Is.EqualTo((long)Memory), "cloning itself copies no frame");
            Assert.That(report.HostBytesUsedAfterRunning, Is.LessThan(report.FullCopyBytes / 4));
            Assert.That(report.Results.Select(r => r.CopyOnWriteCopies), Is.All.GreaterThan(0).And.All.LessThan(16));
        });
        Approvals.Verify(ProvisioningTable.Render(report));
    }

    /// <summary>
    /// Issue 14, defect 10: outside <c>clone</c> nobody would take a frozen template, so the provisioning port ignores
    /// the write and the guest runs on, reading identity 0, instead of the host waiting forever.
    /// </summary>
    [Test]
    public void AGuestWritingTheProvisioningPortOutsideCloneRunsOnAsIdentityZero()
    {
        (CliProcess.Result result, bool timedOut) = CliProcess.TryRunProgram("dotnet",
            [Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), "run", Repository.GuestElf("provision"), "--memory", "8M"], Repository.Root, TimeSpan.FromSeconds(90));
        Assert.That(timedOut, Is.False, "the host hung on the provisioning port");
        Assert.That(result.ExitCode, Is.Zero, result.Stderr);
        Assert.That(result.Text, Does.Contain("template: warm state ready").And.Contain("clone 0: checksum"));
    }

    [Test]
    public async Task AVmThatIsNotATemplateIgnoresTheProvisioningWrite()
    {
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, new CapturingConsole(), new TraceRecorder(null));
        VirtualMachine vm = system.Root.CreateVm(new VmConfiguration { Name = "plain", Image = Repository.ReadGuest("provision"), MemoryBytes = Memory }, out _)!;
        system.Root.Start(vm);
        await system.RunUntilIdleAsync();
        PartitionExit exit = await vm.Exited;
        Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, 0u)));
    }

    [Test]
    public async Task AClonesWritesNeverReachTheTemplateOrItsSiblings()
    {
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 64L << 20 }, console, new TraceRecorder(null));
        VirtualMachine template = system.Root.CreateVm(new VmConfiguration { Name = "t", Image = Repository.ReadGuest("provision"), MemoryBytes = Memory, CaptureTemplate = true }, out _)!;
        system.Root.Start(template);
        await system.RunUntilIdleAsync();
        string before = Hash(system, template);

        VirtualMachine first = system.Root.CloneVm(template, "a", 1);
        VirtualMachine second = system.Root.CloneVm(template, "b", 2);
        Assert.That(Hash(system, first), Is.EqualTo(before), "a fresh clone is the template");
        system.Root.Start(first);
        await system.RunUntilIdleAsync();
        Assert.That(Hash(system, template), Is.EqualTo(before), "the template is untouched by its clone's writes");
        Assert.That(Hash(system, second), Is.EqualTo(before), "a sibling is untouched too");
        Assert.That(Hash(system, first), Is.Not.EqualTo(before), "the clone did write");
    }

    /// <summary>
    /// A host with room for the template's RAM and one page more: the clone's second private copy finds no free frame.
    /// The clone stops alone, saying why, and nothing it shares with the template is written (issue 14: a guest that
    /// touches more than the host can give stops with a clear error, alone).
    /// </summary>
    [Test]
    public async Task AClonesCopyThatFindsTheHostsMemoryExhaustedStopsTheCloneAloneAndSaysSo()
    {
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = Memory + 4096 }, console, new TraceRecorder(null));
        VirtualMachine template = system.Root.CreateVm(new VmConfiguration { Name = "t", Image = Repository.ReadGuest("provision"), MemoryBytes = Memory, CaptureTemplate = true }, out _)!;
        system.Root.Start(template);
        await system.RunUntilIdleAsync();
        string before = Hash(system, template);

        VirtualMachine clone = system.Root.CloneVm(template, "a", 1);
        system.Root.Start(clone);
        await system.RunUntilIdleAsync();
        PartitionExit exit = await clone.Exited;
        Assert.Multiple(() =>
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(exit.Diagnostic, Does.Contain("host memory exhausted").And.Contain("no free frame"));
            Assert.That(Hash(system, template), Is.EqualTo(before), "the template is untouched");
            Assert.That(system.Root.FreeHostMemoryBytes, Is.Zero, "the clone's one copy took the host's last frame");
        });
    }

    [Test]
    public void TheCloneCommandReportsClonesPerSecondAndMemorySaved()
    {
        CliProcess.Result result = CliProcess.Run("clone", "--count", "3");
        Assert.That(result.ExitCode, Is.Zero, result.Stderr);
        Assert.That(result.Text, Does.Contain("clone3    | clone 3: checksum").And.Contain("clones per second").And.Contain("% saved"));
    }

    [Test]
    public void ATemplateThatNeverAsksToBeFrozenIsRefusedClearly()
    {
        CliProcess.Result result = CliProcess.Run("clone", "--guest", "hello", "--count", "2");
        Assert.That(result.ExitCode, Is.EqualTo(HybridVmm.Cli.Common.ExitStatus.InvalidImage));
        Assert.That(result.Stderr, Does.Contain("without asking to be frozen"));
    }

    private static async Task<(ProvisioningReport, HybridSystem)> Provision(int clones)
    {
        var console = new CapturingConsole();
        var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 64L << 20 }, console, new TraceRecorder(null));
        var config = new VmConfiguration { Name = "provision", Image = Repository.ReadGuest("provision"), MemoryBytes = Memory };
        return (await RapidProvisioning.RunAsync(system, config, clones, console.Text), system);
    }

    private static string Hash(HybridSystem system, VirtualMachine vm)
    {
        byte[] ram = new byte[Memory];
        Assert.That(system.Root.ReadMemoryOfStoppedVm(vm, 0, ram), Is.True, "the VM is paused or stopped");
        return Convert.ToHexString(SHA256.HashData(ram));
    }
}
