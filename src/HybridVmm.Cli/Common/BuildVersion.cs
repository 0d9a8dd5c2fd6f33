using System.Reflection;

namespace HybridVmm.Cli.Common;

/// <summary>
/// The version and commit this build of <c>hybridvmm</c> came from. The project bakes the commit into the informational
/// version at build time (<c>0.12.0+COMMIT</c>, see HybridVmm.Cli.csproj); "unknown" when it was built without git.
/// </summary>
public static class BuildVersion
{
    private static readonly string Informational =
        typeof(BuildVersion).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    /// <summary>The package version, e.g. 0.12.0.</summary>
    public static string Version => Informational.Split('+')[0];

    /// <summary>The commit, shortened to 12 hex digits, or "unknown".</summary>
    public static string Commit
    {
        get
        {
            int plus = Informational.IndexOf('+');
            string commit = plus < 0 ? "unknown" : Informational[(plus + 1)..];
            return commit.Length > 12 && commit.All(char.IsAsciiHexDigit) ? commit[..12] : commit;
        }
    }

    /// <summary>What <c>hybridvmm --version</c> prints.</summary>
    public static string Text => $"hybridvmm {Version} (commit {Commit})";
}
