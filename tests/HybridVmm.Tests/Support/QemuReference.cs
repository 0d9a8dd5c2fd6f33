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
    public static string RunLinux(string kernel, string commandLine, string memory, string? initrd = null, int processors = 1, string? cpu = null)
    {
        List<string> args =
        [
            "-kernel", kernel, "-append", commandLine, "-m", memory, "-serial", "stdio", "-monitor", "none",
            "-display", "none", "-no-reboot", "-smp", processors.ToString(),
        ];
        if (initrd is not null) args.AddRange(["-initrd", initrd]);
        if (cpu is not null) args.AddRange(["-cpu", cpu]);
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
        using var qemu = new Session(["-kernel", kernel, "-initrd", initrd, "-append", commandLine, "-m", memory, "-no-reboot"]);
        if (qemu.WaitFor(output => output.Contains(prompt)))
        {
            qemu.Type(input);
        }

        qemu.WaitForExit();
        TestContext.Out.WriteLine($"{Program} {kernel} typing: status {qemu.ExitCode} {qemu.Stderr}");
        return qemu.Output;
    }

    /// <summary>
    /// Boots a Linux kernel as <see cref="RunLinux"/> does until its output satisfies <paramref name="done"/>, then stops
    /// QEMU and returns the output: for what the kernel prints early when the rest of the boot would take too long.
    /// </summary>
    public static string RunLinuxUntil(string kernel, string commandLine, string memory, string initrd, string cpu, Func<string, bool> done) =>
        RunUntil(kernel, "until", ["-kernel", kernel, "-initrd", initrd, "-append", commandLine, "-m", memory, "-cpu", cpu, "-no-reboot"], done);

    /// <summary>
    /// Boots a Linux kernel as QEMU does by default, rebooting it whenever it resets the machine (no
    /// <c>-no-reboot</c>), until its output satisfies <paramref name="done"/>; then stops QEMU and returns the output.
    /// </summary>
    public static string RunLinuxRebooting(string kernel, string commandLine, string memory, string initrd, Func<string, bool> done) =>
        RunUntil(kernel, "rebooting", ["-kernel", kernel, "-initrd", initrd, "-append", commandLine, "-m", memory], done);

    /// <summary>Boots <paramref name="kernel"/> (QEMU's direct kernel boot) as QEMU does by default, rebooting it whenever it resets, until its output satisfies <paramref name="done"/>.</summary>
    public static string RunRebooting(string kernel, Func<string, bool> done) => RunUntil(kernel, "rebooting", ["-kernel", kernel], done);

    /// <summary>Runs QEMU with <paramref name="args"/> until its output satisfies <paramref name="done"/>, then stops it and returns the output.</summary>
    private static string RunUntil(string kernel, string how, IEnumerable<string> args, Func<string, bool> done)
    {
        using var qemu = new Session(args);
        Assert.That(qemu.WaitFor(done), Is.True, $"{Program} never printed what was awaited; its output:\n{qemu.Output}");
        qemu.Kill();
        TestContext.Out.WriteLine($"{Program} {kernel} {how}: {qemu.Output.Length} characters {qemu.Stderr}");
        return qemu.Output;
    }

    /// <summary>A running QEMU with its serial line on stdio, its output read as it comes.</summary>
    private sealed class Session : IDisposable
    {
        private readonly System.Diagnostics.Process _qemu;
        private readonly Task<string> _stderr;
        private readonly Task _reader;
        private readonly StringBuilder _output = new();

        public Session(IEnumerable<string> args)
        {
            var start = new System.Diagnostics.ProcessStartInfo(Require())
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string arg in args.Concat(["-serial", "stdio", "-monitor", "none", "-display", "none"]))
            {
                start.ArgumentList.Add(arg);
            }

            _qemu = System.Diagnostics.Process.Start(start)!;
            _stderr = _qemu.StandardError.ReadToEndAsync();
            _reader = Task.Run(async () =>
            {
                var buffer = new byte[4096];
                int n;
                while ((n = await _qemu.StandardOutput.BaseStream.ReadAsync(buffer)) > 0)
                {
                    lock (_output) _output.Append(Encoding.Latin1.GetString(buffer, 0, n));
                }
            });
        }

        public string Output
        {
            get
            {
                lock (_output) return _output.ToString();
            }
        }

        public int ExitCode => _qemu.ExitCode;

        public string Stderr => _stderr.IsCompleted ? _stderr.Result : "";

        /// <summary>Waits, at most <see cref="CliProcess.SafetyLimit"/>, until the output satisfies <paramref name="condition"/> or QEMU ends.</summary>
        public bool WaitFor(Func<string, bool> condition)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!condition(Output) && !_reader.IsCompleted && clock.Elapsed < CliProcess.SafetyLimit)
            {
                Thread.Sleep(50);
            }

            return condition(Output);
        }

        public void Type(byte[] input)
        {
            _qemu.StandardInput.BaseStream.Write(input);
            _qemu.StandardInput.Close();
        }

        public void WaitForExit()
        {
            if (!_qemu.WaitForExit(CliProcess.SafetyLimit))
            {
                Kill();
                Assert.Fail($"{Program} did not finish; its output:\n{Output}");
            }

            _reader.Wait();
        }

        public void Kill()
        {
            if (!_qemu.HasExited)
            {
                _qemu.Kill(entireProcessTree: true);
            }

            _qemu.WaitForExit();
            _reader.Wait();
        }

        public void Dispose()
        {
            Kill();
            _qemu.Dispose();
        }
    }
}
