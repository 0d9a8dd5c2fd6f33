using System.Text.RegularExpressions;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// <c>hybridvmm</c> as a .NET tool (README "Installing the tool"): <c>dotnet pack</c> makes a tool package, which
/// <c>dotnet tool install</c> puts on a tool path, and the installed command answers <c>--version</c> with the
/// version and the commit. The package is made from the build the tests already have (--no-build), to keep it cheap.
/// </summary>
public class ToolPackageTests
{
    [Test]
    public void ThePackedToolInstallsIntoAToolPathAndPrintsItsVersionAndCommit()
    {
        string configuration = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name; // bin/CONFIGURATION/net10.0
        string work = Path.Combine(Path.GetTempPath(), $"hybridvmm-tool-{Guid.NewGuid():N}");
        string packages = Path.Combine(work, "packages");
        string tools = Path.Combine(work, "tools");
        try
        {
            CliProcess.Result pack = CliProcess.RunProgram("dotnet",
                ["pack", Path.Combine(Repository.Root, "src", "HybridVmm.Cli"), "--no-build", "-c", configuration, "-o", packages, "--nologo"], Repository.Root);
            Assert.That(pack.ExitCode, Is.EqualTo(0), $"dotnet pack failed:\n{pack.Text}\n{pack.Stderr}");
            Assert.That(Directory.GetFiles(packages, "hybridvmm.*.nupkg"), Has.Length.EqualTo(1), "dotnet pack made no hybridvmm package");

            CliProcess.Result install = CliProcess.RunProgram("dotnet",
                ["tool", "install", "--tool-path", tools, "--add-source", packages, "hybridvmm"], work);
            Assert.That(install.ExitCode, Is.EqualTo(0), $"dotnet tool install failed:\n{install.Text}\n{install.Stderr}");

            string dotnetRoot = Path.GetDirectoryName(Environment.ProcessPath!)!;
            CliProcess.Result version = RunWithDotnetRoot(Path.Combine(tools, "hybridvmm"), dotnetRoot, work);
            Assert.That(version.ExitCode, Is.EqualTo(0), version.Stderr);
            Assert.That(version.Text.TrimEnd(), Does.Match(@"^hybridvmm \d+\.\d+\.\d+ \(commit ([0-9a-f]{12}|unknown)\)$"));

            string head = CliProcess.RunProgram("git", ["rev-parse", "HEAD"], Repository.Root).Text.Trim();
            if (Regex.IsMatch(head, "^[0-9a-f]{40}$"))
            {
                // Built from this checkout: the commit is the one the build saw (HEAD, or an ancestor if a commit came since).
                string commit = Regex.Match(version.Text, @"commit ([0-9a-f]{12})").Groups[1].Value;
                CliProcess.Result known = CliProcess.RunProgram("git", ["cat-file", "-e", commit + "^{commit}"], Repository.Root);
                Assert.That(known.ExitCode, Is.EqualTo(0), $"--version names {commit}, which is no commit of this repository");
            }
        }
        finally
        {
            try
            {
                Directory.Delete(work, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static CliProcess.Result RunWithDotnetRoot(string program, string dotnetRoot, string workingDirectory)
    {
        // The tool's launcher finds the runtime through DOTNET_ROOT when dotnet is not in a default place.
        string? previous = Environment.GetEnvironmentVariable("DOTNET_ROOT");
        Environment.SetEnvironmentVariable("DOTNET_ROOT", previous ?? dotnetRoot);
        try
        {
            return CliProcess.RunProgram(program, ["--version"], workingDirectory);
        }
        finally
        {
            Environment.SetEnvironmentVariable("DOTNET_ROOT", previous);
        }
    }
}
