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
    public static string RunLinux(string kernel, string commandLine, string memory, string? initrd = null)
    {
        List<string> args =
        [
            "-kernel", kernel, "-append", commandLine, "-m", memory, "-serial", "stdio", "-monitor", "none",
            "-display", "none", "-no-reboot",
        ];
        if (initrd is not null) args.AddRange(["-initrd", initrd]);
        CliProcess.Result run = CliProcess.RunProgram(Require(), args, Repository.Root);
        TestContext.Out.WriteLine($"{Program} {kernel}: status {run.ExitCode}, {run.Stdout.Length} bytes {run.Stderr}");
        return Encoding.Latin1.GetString(run.Stdout);
    }
}
