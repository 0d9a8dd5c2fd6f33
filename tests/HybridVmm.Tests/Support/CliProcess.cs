using System.Diagnostics;
using System.Text;

namespace HybridVmm.Tests.Support;

/// <summary>Runs the real <c>hybridvmm</c> program as a separate process.</summary>
public static class CliProcess
{
    /// <summary>How long one program may run before the test kills it and fails: a hang must fail, never stall the suite.</summary>
    public static readonly TimeSpan SafetyLimit = TimeSpan.FromMinutes(3);

    public sealed record Result(int ExitCode, byte[] Stdout, string Stderr)
    {
        public string Text => Encoding.Latin1.GetString(Stdout);
    }

    public static Result Run(params string[] args) => RunIn(Repository.Root, args);

    /// <summary>As <see cref="Run"/>, with a longer limit for a long guest (a Linux boot).</summary>
    public static Result RunLong(TimeSpan limit, params string[] args) =>
        RunProgram("dotnet", [Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), .. args], Repository.Root, limit);

    public static Result RunIn(string workingDirectory, params string[] args) =>
        RunProgram("dotnet", [Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), .. args], workingDirectory);

    /// <summary>As <see cref="Run"/>, with <paramref name="stdin"/> written to a pipe on its standard input, then closed.</summary>
    public static Result RunWithInput(byte[] stdin, params string[] args) =>
        RunProgram("dotnet", [Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"), .. args], Repository.Root, stdin: stdin);

    /// <summary>Runs any program with no standard input (or <paramref name="stdin"/>), collecting stdout as bytes and stderr as text.</summary>
    public static Result RunProgram(string program, IEnumerable<string> args, string workingDirectory, TimeSpan? limit = null, byte[]? stdin = null)
    {
        TimeSpan safetyLimit = limit ?? SafetyLimit;
        (Result result, bool timedOut) = TryRunProgram(program, args, workingDirectory, safetyLimit, stdin);
        if (timedOut)
        {
            Assert.Fail($"{program} {string.Join(' ', args)} did not finish within {safetyLimit.TotalMinutes} minutes; " +
                        $"it had written {result.Stdout.Length} bytes to stdout; stderr: {result.Stderr}");
        }

        return result;
    }

    /// <summary>
    /// As <see cref="RunProgram"/>, but a program still running at <paramref name="limit"/> is killed and reported as
    /// timed out, with what it had written, instead of failing the test.
    /// </summary>
    public static (Result Result, bool TimedOut) TryRunProgram(string program, IEnumerable<string> args, string workingDirectory, TimeSpan limit, byte[]? stdin = null)
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
        if (stdin is not null)
        {
            // Written on another task: a program that does not read its input must not stall the test.
            _ = Task.Run(() =>
            {
                try
                {
                    process.StandardInput.BaseStream.Write(stdin);
                    process.StandardInput.Close();
                }
                catch (IOException)
                {
                }
            });
        }
        else
        {
            process.StandardInput.Close();
        }
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var stdout = new MemoryStream();
        // Read stdout while waiting, so that the safety limit holds even when the program never closes it.
        Task copy = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            copy.Wait(TimeSpan.FromSeconds(10));
            string tail = stderr.Wait(TimeSpan.FromSeconds(10)) ? stderr.Result : "";
            return (new Result(-1, stdout.ToArray(), tail), true);
        }

        process.WaitForExit(); // the asynchronous readers reach the end of both streams
        copy.Wait();
        return (new Result(process.ExitCode, stdout.ToArray(), stderr.Result), false);
    }
}
