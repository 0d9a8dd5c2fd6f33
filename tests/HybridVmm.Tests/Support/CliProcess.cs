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

    public static Result RunIn(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"));
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
            Assert.Fail($"hybridvmm {string.Join(' ', args)} did not finish within the safety limit");
        }

        return new Result(process.ExitCode, stdout.ToArray(), stderr.Result);
    }
}
