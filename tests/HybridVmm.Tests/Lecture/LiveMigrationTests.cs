using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Migration;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Lecture;

/// <summary>Live migration over TCP on loopback: pre-copy with dirty tracking, stop-and-copy, resume on the target.</summary>
public class LiveMigrationTests
{
    private static string Expected => Repository.QemuOutput("cpu");

    [TestCase(9_000_000)]
    [TestCase(14_000_000)]
    public async Task TheGuestsOutputAcrossAMigrationEqualsAnUnmigratedRun(long migrateAt)
    {
        var targetConsole = new CapturingConsole();
        using var target = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 72L << 20 }, targetConsole, new TraceRecorder(null));
        var sourceConsole = new CapturingConsole();
        using var source = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 72L << 20 }, sourceConsole, new TraceRecorder(null));
        VirtualMachine vm = source.Root.CreateVm(new VmConfiguration { Name = "cpu", Image = Repository.ReadGuest("cpu") }, out _)!;
        source.Root.PauseAtInstruction(vm, migrateAt);
        source.Root.Start(vm);
        await source.RunUntilIdleAsync();

        (MigrationReport report, VirtualMachine? moved) = await LiveMigration.OverLoopbackAsync(source, vm, target, new MigrationOptions());
        Assert.That(report.Succeeded, Is.True, report.Failure);
        Assert.That(moved, Is.Not.Null);
        Assert.That(vm.State, Is.EqualTo(PartitionState.Stopped), "the source copy is gone");
        target.Root.Start(moved!);
        await target.RunUntilIdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(sourceConsole.Text(vm) + targetConsole.Text(moved!), Is.EqualTo(Expected));
            Assert.That(moved!.Exited.Result.Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(moved.Statistics.InstructionsRetired, Is.EqualTo(23_959_616 + 1), "the guest's instructions and the OUT that ends it, as unmigrated");
            Assert.That(report.PagesPerRound, Is.Not.Empty);
            Assert.That(report.PagesPerRound[0], Is.GreaterThan(report.FinalPages), "pre-copy moved most pages while the guest ran");
        });
    }

    [Test]
    public void TwoHypervisorProcessesMigrateAGuestOverLoopbackTcp()
    {
        (CliProcess.Result source, int targetStatus, string targetOut, string targetErr) = MigrateBetweenProcesses("cpu", 9_000_000);
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(source.Stderr, Does.Contain("pre-copy round").And.Contain("downtime"));
            Assert.That(targetStatus, Is.Zero, targetErr);
            Assert.That(source.Text + targetOut, Is.EqualTo(Expected));
        });
    }

    [Test]
    public void AGuestTimingItsTimerInterruptsMigratesBetweenProcessesWithoutNoticing()
    {
        // The clock guest counts loop iterations between PIT interrupts: a deadline moved on the target changes a count.
        CliProcess.Result uninterrupted = CliProcess.Run("run", Repository.GuestElf("clock"));
        Assert.That(uninterrupted.ExitCode, Is.Zero, uninterrupted.Stderr);
        (CliProcess.Result source, int targetStatus, string targetOut, string targetErr) = MigrateBetweenProcesses("clock", 400_000);
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(targetStatus, Is.Zero, targetErr);
            Assert.That(source.Text + targetOut, Is.EqualTo(uninterrupted.Text));
        });
    }

    /// <summary>Runs a sample guest that migrates at an instruction count to a <c>receive</c> process on loopback, both given one token.</summary>
    internal static (CliProcess.Result Source, int TargetStatus, string TargetOut, string TargetErr) MigrateBetweenProcesses(string guest, long migrateAt)
    {
        string token = TokenFile("a-shared-migration-token");
        try
        {
            return MigrateBetweenProcesses(["--token-file", token], ["run", Repository.GuestElf(guest), "--migrate-at", migrateAt.ToString(), "--token-file", token]);
        }
        finally
        {
            File.Delete(token);
        }
    }

    /// <summary>Starts <c>receive</c> with <paramref name="receiverArgs"/>, then runs the source command line with <c>--migrate-to</c> that receiver.</summary>
    internal static (CliProcess.Result Source, int TargetStatus, string TargetOut, string TargetErr) MigrateBetweenProcesses(string[] receiverArgs, string[] sourceArgs)
    {
        using Process receiver = StartReceiver(out int port, receiverArgs);
        Task<string> targetOut = receiver.StandardOutput.ReadToEndAsync();
        Task<string> targetErr = receiver.StandardError.ReadToEndAsync();
        CliProcess.Result source = CliProcess.Run([.. sourceArgs, "--migrate-to", $"127.0.0.1:{port}"]);
        if (!receiver.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            receiver.Kill();
            Assert.Fail("the receiver did not end");
        }

        return (source, receiver.ExitCode, targetOut.Result, targetErr.Result);
    }

    /// <summary>A temporary token file holding <paramref name="token"/> and a newline.</summary>
    internal static string TokenFile(string token)
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-token-{Guid.NewGuid():N}");
        File.WriteAllText(path, token + "\n");
        return path;
    }

    [Test]
    public void AnUnreachableTargetLeavesTheGuestRunningOnTheSource()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int closedPort = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        CliProcess.Result result = CliProcess.Run("run", Repository.GuestElf("cpu"), "--migrate-at", "5000000", "--migrate-to", $"127.0.0.1:{closedPort}");
        Assert.That(result.ExitCode, Is.Zero, result.Stderr);
        Assert.That(result.Stderr, Does.Contain("migration failed").And.Contain("nothing was lost"));
        Assert.That(result.Text, Is.EqualTo(Expected));
    }

    [Test]
    public async Task ATargetThatDiesMidMigrationLeavesTheGuestRunningOnTheSource()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        Task dying = Task.Run(async () =>
        {
            using TcpClient client = await listener.AcceptTcpClientAsync();
            NetworkStream stream = client.GetStream();
            await MigrationProtocol.ReadFrameAsync(stream, CancellationToken.None);   // Hello
            await MigrationProtocol.ReadFrameAsync(stream, CancellationToken.None);   // first pages
            client.Client.Close();                                                     // crash
        });

        var console = new CapturingConsole();
        using var source = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 72L << 20 }, console, new TraceRecorder(null));
        VirtualMachine vm = source.Root.CreateVm(new VmConfiguration { Name = "cpu", Image = Repository.ReadGuest("cpu") }, out _)!;
        source.Root.PauseAtInstruction(vm, 9_000_000);
        source.Root.Start(vm);
        await source.RunUntilIdleAsync();
        MigrationReport report;
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            report = await LiveMigration.SendAsync(source, vm, client.GetStream(), new MigrationOptions());
        }

        await dying;
        Assert.That(report.Succeeded, Is.False);
        Assert.That(vm.State, Is.Not.EqualTo(PartitionState.Stopped));
        source.Root.Start(vm);
        await source.RunUntilIdleAsync();
        Assert.That(console.Text(vm), Is.EqualTo(Expected));
        Assert.That(vm.Exited.Result.Reason, Is.EqualTo(StopReason.GuestExit));
    }

    internal static Process StartReceiver(out int port, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string arg in (string[])[Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), "receive", "--listen", "127.0.0.1:0", .. args])
        {
            start.ArgumentList.Add(arg);
        }

        Process process = Process.Start(start)!;
        string line = process.StandardError.ReadLine() ?? "";
        Assert.That(line, Does.StartWith("hybridvmm: listening on 127.0.0.1:"));
        port = int.Parse(line[(line.LastIndexOf(':') + 1)..]);
        return process;
    }
}
