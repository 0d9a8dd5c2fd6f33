using System.Diagnostics;
using System.Text;

namespace HybridVmm.Tests.Support;

/// <summary>Runs the real <c>hybridvmm</c> program as a separate process.</summary>
public static class CliProcess
{
    public sealed record Result(int ExitCode, byte[] Stdout, string Stderr)
    {
        public string Text => Encoding.Latin1.GetString(Stdout);
    }

    public static Result Run(params string[] args) => RunIn(Repository.Root, args);

    public static Result RunIn(string workingDirectory, params string[] args) =>
        RunProgram("dotnet", [Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), .. args], workingDirectory);

    /// <summary>Runs any program with no standard input, collecting stdout as bytes and stderr as text.</summary>
    public static Result RunProgram(string program, IEnumerable<string> args, string workingDirectory)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        process.StandardInput.Close();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var stdout = new MemoryStream();
        process.StandardOutput.BaseStream.CopyTo(stdout);
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{program} {string.Join(' ', args)} did not finish within the safety limit");
        }

        return new Result(process.ExitCode, stdout.ToArray(), stderr.Result);
    }
}
