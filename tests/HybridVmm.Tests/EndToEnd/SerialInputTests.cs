using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// <c>hybridvmm run --serial-input</c>: a file or a pipe feeds COM1 deterministically (the VM waits for each byte), so
/// the same guest and input give the same output and the same trace; without the option a pipe on stdin is not read.
/// </summary>
public class SerialInputTests
{
    private string _guest = "";
    private readonly List<string> _files = new();

    [OneTimeSetUp]
    public void BuildGuest() => _guest = SerialEchoGuest.WriteToTempFile();

    [OneTimeTearDown]
    public void RemoveGuest() => File.Delete(_guest);

    [TearDown]
    public void RemoveFiles()
    {
        foreach (string file in _files) File.Delete(file);
        _files.Clear();
    }

    private string TempFile(string? contents = null)
    {
        string path = Path.GetTempFileName();
        _files.Add(path);
        if (contents is not null) File.WriteAllText(path, contents);
        return path;
    }

    [Test]
    public void AnInputFileReachesTheGuestAndTheSameInputGivesTheSameTraceByteForByte()
    {
        string input = TempFile("hello, world.ignored after the dot");
        string first = TempFile(), second = TempFile();
        CliProcess.Result a = CliProcess.Run("run", _guest, "--serial-input", input, "--trace", first);
        CliProcess.Result b = CliProcess.Run("run", _guest, "--serial-input", input, "--trace", second);
        Assert.Multiple(() =>
        {
            Assert.That(a.Text, Is.EqualTo("ready\nHELLO, WORLD"), a.Stderr);
            Assert.That(a.ExitCode, Is.EqualTo(SerialEchoGuest.ExitValue), a.Stderr);
            Assert.That(File.ReadAllBytes(second), Is.EqualTo(File.ReadAllBytes(first)), "the same guest and input: the same trace");
            Assert.That(File.ReadAllText(first), Does.Contain("com1 read port=0x03f8 size=1 -> 0x68"), "'h' read from RBR");
        });
    }

    [Test]
    public void APipeOnStdinWithSerialInputDashGivesTheSameRunAsTheFile()
    {
        const string text = "pipe.";
        string input = TempFile(text), fromFile = TempFile(), fromPipe = TempFile();
        CliProcess.Result file = CliProcess.Run("run", _guest, "--serial-input", input, "--trace", fromFile);
        CliProcess.Result pipe = CliProcess.RunWithInput(System.Text.Encoding.ASCII.GetBytes(text), "run", _guest, "--serial-input", "-", "--trace", fromPipe);
        Assert.Multiple(() =>
        {
            Assert.That(pipe.Text, Is.EqualTo("ready\nPIPE"), pipe.Stderr);
            Assert.That(pipe.ExitCode, Is.EqualTo(SerialEchoGuest.ExitValue), pipe.Stderr);
            Assert.That(File.ReadAllBytes(fromPipe), Is.EqualTo(File.ReadAllBytes(fromFile)));
        });
    }

    [Test]
    public void WithoutTheOptionAPipeOnStdinIsNotRead()
    {
        CliProcess.Result result = CliProcess.RunWithInput("typed.\n"u8.ToArray(), "run", _guest, "--max-instructions", "200000");
        Assert.That((result.Text, result.ExitCode), Is.EqualTo(("ready\n", ExitStatus.InstructionLimit)), result.Stderr);
    }

    [Test]
    public void WhenTheInputEndsTheGuestWaitsAsOnASilentLine()
    {
        string input = TempFile("abc");
        CliProcess.Result result = CliProcess.Run("run", _guest, "--serial-input", input, "--max-instructions", "2000000");
        Assert.That((result.Text, result.ExitCode), Is.EqualTo(("ready\nABC", ExitStatus.InstructionLimit)), result.Stderr);
    }

    [Test]
    public void SigtermEndsARunWaitingForAPipeThatStaysOpen()
    {
        var start = new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), "run", _guest, "--serial-input", "-" })
        {
            start.ArgumentList.Add(arg);
        }

        using System.Diagnostics.Process process = System.Diagnostics.Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        process.StandardInput.Write("ab");
        process.StandardInput.Flush(); // and the pipe stays open: the guest waits for its next byte
        var seen = new System.Text.StringBuilder();
        var buffer = new char[64];
        while (!seen.ToString().Contains("AB"))
        {
            int n = process.StandardOutput.Read(buffer, 0, buffer.Length);
            Assert.That(n, Is.GreaterThan(0), "the guest's output ended before it echoed AB: " + seen);
            seen.Append(buffer, 0, n);
        }

        using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", process.Id.ToString()])) kill.WaitForExit();
        bool ended = process.WaitForExit(CliProcess.SafetyLimit);
        if (!ended) process.Kill(entireProcessTree: true);
        Assert.That(ended, Is.True, "the run did not end on SIGTERM while waiting for input");
        Assert.That(process.ExitCode, Is.EqualTo(ExitStatus.Interrupted), stderr.Result);
        Assert.That(stderr.Result, Does.Contain("hybridvmm: interrupted"));
    }

    [TestCase("/nonexistent/input.txt")]
    [TestCase("/")]
    public void AnUnreadableSerialInputIsNoInputWithOneLineAndNoTrace(string input)
    {
        string trace = TempFile("previous trace\n");
        CliProcess.Result result = CliProcess.Run("run", _guest, "--serial-input", input, "--trace", trace);
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.NoInput));
            Assert.That(result.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(result.Stderr, Does.StartWith($"hybridvmm: error: cannot read the serial input '{input}'"));
            Assert.That(File.ReadAllText(trace), Is.EqualTo("previous trace\n"));
        });
    }
}
