namespace HybridVmm.Architecture.Tests;

/// <summary>The checkout this test runs from, and the one the report analyses.</summary>
public static class RepositoryRoot
{
    /// <summary>Set to another checkout's root to report on its sources (for before/after figures); nothing is built there.</summary>
    public const string AnalyseRootVariable = "HYBRIDVMM_ANALYSE_ROOT";

    public static string Path { get; } = Find();

    /// <summary><see cref="AnalyseRootVariable"/> when set, otherwise <see cref="Path"/>.</summary>
    public static string Analysed => Environment.GetEnvironmentVariable(AnalyseRootVariable) is { Length: > 0 } other
        ? System.IO.Path.GetFullPath(other)
        : Path;

    private static string Find()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "HybridVmm.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("HybridVmm.sln not found above " + AppContext.BaseDirectory);
    }
}
