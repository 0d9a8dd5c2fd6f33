using System.Diagnostics;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// <c>hybridvmm serve</c>: the generic host with the kernel and root partition as hosted services. Each serve puts its
/// API socket in the test's own directory, so that tests (and engineers) running serve at once never meet on the
/// default socket.
/// </summary>
public class ServeTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-serve-{Guid.NewGuid():N}"));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void ServesTheConfiguredVmsAndWritesPerVmTraces()
    {
        string config = Write("""
            { "HybridVmm": { "HostMemory": "128M", "ExitWhenGuestsStop": true,
              "Vms": [
                { "Name": "one", "Image": "embedded:hello", "Memory": "16M", "Trace": "one.trace" },
                { "Name": "two", "Image": "embedded:asmhello", "Memory": "16M" } ] } }
            """);
        CliProcess.Result result = CliProcess.RunIn(_dir, "serve", "--config", config, "--api-socket", "api.sock");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.Zero, result.Stderr);
            Assert.That(result.Text, Does.Contain("one       | Hello from a HybridVmm guest!"));
            Assert.That(result.Text, Does.Contain("two       |"));
            Assert.That(result.Stderr, Does.Contain("VM one started").And.Contain("VM two stopped: GuestExit"));
            Assert.That(File.ReadAllText(Path.Combine(_dir, "one.trace")), Does.Contain("one/0").And.Not.Contain("two/0"));
        });
    }

    [Test]
    public void ServesEnlightenedGuestsThatPingEachOther()
    {
        string config = Write("""
            { "HybridVmm": { "HostMemory": "64M", "ExitWhenGuestsStop": true,
              "Vms": [
                { "Name": "pong", "Image": "embedded:enlnet", "Memory": "8M", "CommandLine": "pong", "SyntheticDevices": [ "synthcon", "synthnet" ] },
                { "Name": "ping", "Image": "embedded:enlnet", "Memory": "8M", "CommandLine": "ping", "SyntheticDevices": [ "synthcon", "synthnet" ] } ] } }
            """);
        CliProcess.Result result = CliProcess.RunIn(_dir, "serve", "--config", config, "--api-socket", "api.sock");
        Assert.That(result.ExitCode, Is.Zero, result.Stderr);
        Assert.That(result.Text, Does.Contain("ping      | enlnet ping: 3 replies to 3 requests"));
        Assert.That(result.Text, Does.Contain("pong      | enlnet pong: echo request seq=3 from 10.0.0.1"));
    }

    [Test]
    public void AnUnknownConfigurationKeyIsRefusedWithOneClearMessage()
    {
        string config = Write("""{ "HybridVmm": { "Vms": [ { "Name": "a", "Image": "embedded:hello", "Memroy": "16M" } ] } }""");
        CliProcess.Result result = CliProcess.RunIn(_dir, "serve", "--config", config, "--api-socket", "api.sock");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Configuration));
        Assert.That(result.Stderr, Does.Contain("Memroy"));
        Assert.That(result.Stderr, Does.Not.Contain("   at "));
    }

    [Test]
    public void InvalidOptionsAreAllNamedAtStart()
    {
        string config = Write("""
            { "HybridVmm": { "OnGuestReset": "restart", "Vms": [
                { "Name": "a", "Image": "embedded:nope", "Memory": "1K" },
                { "Name": "a", "Image": "missing.elf", "Devices": [ "floppy" ] },
                { "Name": "b", "Image": "embedded:hello", "Cpus": 65 } ] } }
            """);
        CliProcess.Result result = CliProcess.RunIn(_dir, "serve", "--config", config, "--api-socket", "api.sock");
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Configuration));
        Assert.That(result.Stderr, Does.Contain("no embedded guest 'nope'")
            .And.Contain("Memory")
            .And.Contain("used twice")
            .And.Contain("missing.elf")
            .And.Contain("unknown device 'floppy'")
            .And.Contain("Vms:2:Cpus must be 1 to 64, not 65")
            .And.Contain("OnGuestReset: 'restart' is neither 'reboot' nor 'stop'"));
    }

    [Test]
    public void SigtermStopsTheGuestsCleanlyAndFlushesTheTrace()
    {
        File.WriteAllBytes(Path.Combine(_dir, "spin.elf"), FlatKernel.Spin());
        string config = Write("""{ "HybridVmm": { "Trace": "all.trace", "Vms": [ { "Name": "spin", "Image": "spin.elf", "Memory": "4M" } ] } }""");
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string arg in new[] { Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), "serve", "--config", config, "--api-socket", "api.sock" })
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = new System.Text.StringBuilder();
        string? line;
        while ((line = process.StandardError.ReadLine()) is not null && !line.Contains("VM spin started"))
        {
            stderr.AppendLine(line);
        }

        Assert.That(line, Is.Not.Null, stderr.ToString());
        Process.Start("kill", $"-TERM {process.Id}")!.WaitForExit();
        string rest = process.StandardError.ReadToEnd();
        Assert.That(process.WaitForExit(TimeSpan.FromSeconds(60)), Is.True, "serve did not stop on SIGTERM");
        _ = stdout.Result;
        Assert.Multiple(() =>
        {
            Assert.That(process.ExitCode, Is.Zero, rest);
            Assert.That(rest, Does.Contain("VM spin stopped: StoppedByRoot"));
            Assert.That(File.ReadAllText(Path.Combine(_dir, "all.trace")), Does.Contain("spin/-  Lifecycle stopped by-root"));
        });
    }

    private string Write(string json)
    {
        string path = Path.Combine(_dir, "vms.json");
        File.WriteAllText(path, json);
        return path;
    }
}
