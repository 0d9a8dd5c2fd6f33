using System.Text;

namespace HybridVmm.Tests.Support;

/// <summary>The reference machine: <c>qemu-system-i386</c> (Debian package qemu-system-x86), run live, never from a recording.</summary>
public static class QemuReference
{
    public const string Program = "qemu-system-i386";

    /// <summary>The full path of qemu-system-i386, or an ignored test when it is not installed.</summary>
    public static string Require()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, Program);
            if (File.Exists(candidate)) return candidate;
        }

        Assert.Ignore($"{Program} is not installed (Debian package qemu-system-x86)");
        return "";
    }

    /// <summary>
    /// Boots a Linux kernel with QEMU's direct kernel boot and returns its serial output. The command line should end
    /// the run (panic=-1 with no root file system: the reboot ends QEMU, as -no-reboot asks).
    /// </summary>
    public static string RunLinux(string kernel, string commandLine, string memory, string? initrd = null, int processors = 1)
    {
        List<string> args =
        [
            "-kernel", kernel, "-append", commandLine, "-m", memory, "-serial", "stdio", "-monitor", "none",
            "-display", "none", "-no-reboot", "-smp", processors.ToString(),
        ];
        if (initrd is not null) args.AddRange(["-initrd", initrd]);
        CliProcess.Result run = CliProcess.RunProgram(Require(), args, Repository.Root);
        TestContext.Out.WriteLine($"{Program} {kernel}: status {run.ExitCode}, {run.Stdout.Length} bytes {run.Stderr}");
        return Encoding.Latin1.GetString(run.Stdout);
    }

    /// <summary>
    /// Boots a Linux kernel as <see cref="RunLinux"/> does, and types <paramref name="input"/> on its serial line
    /// (QEMU's stdin) once the output shows <paramref name="prompt"/>: QEMU hands piped input to the UART as soon as
    /// it has room, so bytes sent before Linux opens the port would be lost. The input should end the run.
    /// </summary>
    public static string RunLinuxTyping(string kernel, string commandLine, string memory, string initrd, string prompt, byte[] input)
    {
        var start = new System.Diagnostics.ProcessStartInfo(Require())
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[]
                 {
                     "-kernel", kernel, "-initrd", initrd, "-append", commandLine, "-m", memory, "-serial", "stdio",
                     "-monitor", "none", "-display", "none", "-no-reboot",
                 })
        {
            start.ArgumentList.Add(arg);
        }

        using System.Diagnostics.Process qemu = System.Diagnostics.Process.Start(start)!;
        Task<string> stderr = qemu.StandardError.ReadToEndAsync();
        var output = new StringBuilder();
        Task reader = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            int n;
            while ((n = await qemu.StandardOutput.BaseStream.ReadAsync(buffer)) > 0)
            {
                lock (output) output.Append(Encoding.Latin1.GetString(buffer, 0, n));
            }
        });
        string Output()
        {
            lock (output) return output.ToString();
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!Output().Contains(prompt) && !reader.IsCompleted && clock.Elapsed < CliProcess.SafetyLimit)
        {
            Thread.Sleep(50);
        }

        if (Output().Contains(prompt))
        {
            qemu.StandardInput.BaseStream.Write(input);
            qemu.StandardInput.Close();
        }

        if (!qemu.WaitForExit(CliProcess.SafetyLimit))
        {
            qemu.Kill(entireProcessTree: true);
            Assert.Fail($"{Program} did not finish; its output:\n{Output()}");
        }

        reader.Wait();
        TestContext.Out.WriteLine($"{Program} {kernel} typing: status {qemu.ExitCode} {stderr.Result}");
        return Output();
    }
}
