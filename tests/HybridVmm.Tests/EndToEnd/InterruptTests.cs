using System.Diagnostics;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Issue 14, defect 9: SIGINT and SIGTERM stop every foreground command cleanly, not only run and restore: the
/// guests are stopped, the trace flushed, one line says so and the status is 130 (docs/exit-codes.md). Each test
/// signals only once the command has shown it is under way, so the signal never races the program's start.
/// </summary>
public class InterruptTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-signal-{Guid.NewGuid():N}"));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void SigintWhileReceiveWaitsForASourceIsInterrupted()
    {
        string trace = Path.Combine(_dir, "receive.trace");
        AssertInterrupted(Signal("INT", "listening on", fromStderr: true, "receive", "--listen", "127.0.0.1:0", "--insecure", "--trace", trace));
        Assert.That(File.Exists(trace), Is.True);
    }

    [Test]
    public void SigtermDuringBenchIsInterrupted() =>
        AssertInterrupted(Signal("TERM", "warm-up:", fromStderr: false, "bench", "--guest", "cpu", "--runs", "100000"));

    [Test]
    public void SigtermWhileCloneBootsItsTemplateIsInterrupted()
    {
        string trace = Path.Combine(_dir, "clone.trace");
        AssertInterrupted(Signal("TERM", "booted", fromStderr: false, "clone", "--guest", PrintThenSpin(), "--count", "2", "--trace", trace));
        Assert.That(File.ReadAllText(trace), Does.Contain("Lifecycle"), "the trace was flushed");
    }

    /// <summary>A guest that prints "booted" on COM1, then spins: it never asks to be frozen, never exits.</summary>
    private string PrintThenSpin()
    {
        string path = Path.Combine(_dir, "spin.elf");
        File.WriteAllBytes(path, FlatKernel.Build(a =>
        {
            a.mov(dx, 0x3F8);
            foreach (char c in "booted\n")
            {
                a.mov(al, (byte)c);
                a.@out(dx, al);
            }

            var top = a.CreateLabel();
            a.Label(ref top);
            a.inc(eax);
            a.jmp(top);
        }));
        return path;
    }

    private (int ExitCode, string Stderr) Signal(string signal, string marker, bool fromStderr, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (string arg in new[] { Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll") }.Concat(args))
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        process.StandardInput.Close();
        StreamReader watched = fromStderr ? process.StandardError : process.StandardOutput;
        Task<string> other = (fromStderr ? process.StandardOutput : process.StandardError).ReadToEndAsync();
        var seen = new System.Text.StringBuilder();
        string? line;
        while ((line = watched.ReadLine()) is not null && !line.Contains(marker))
        {
            seen.AppendLine(line);
        }

        Assert.That(line, Is.Not.Null, $"never saw '{marker}': {seen}{(process.HasExited ? other.Result : "")}");
        using (Process kill = Process.Start("kill", [$"-{signal}", process.Id.ToString()])!)
        {
            kill.WaitForExit();
        }

        string rest = watched.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{args[0]} did not stop on SIG{signal}");
        }

        return (process.ExitCode, fromStderr ? rest : other.Result);
    }

    private static void AssertInterrupted((int ExitCode, string Stderr) result) => Assert.Multiple(() =>
    {
        Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Interrupted), result.Stderr);
        Assert.That(result.Stderr, Does.Contain("hybridvmm: interrupted; ").And.Contain("trace flushed"));
        Assert.That(result.Stderr, Does.Not.Contain("   at "));
    });
}
