namespace HybridVmm.Architecture.Tests;

/// <summary>
/// The import-circle and file-size report of every project under src/ and samples/. Point
/// HYBRIDVMM_ANALYSE_ROOT at another checkout to report on its sources instead (before/after figures):
/// <c>HYBRIDVMM_ANALYSE_ROOT=/path/to/checkout dotnet test tests/HybridVmm.Architecture.Tests --filter ImportCircleReport --logger "console;verbosity=detailed"</c>.
/// </summary>
public class ImportCircleReportTests
{
    [Test]
    public void ImportCircleReportCoversEveryProjectAndResolvesItsNames()
    {
        string root = RepositoryRoot.Analysed;
        var results = new List<FolderDependencies>();
        foreach (string folder in new[] { "src", "samples" })
        {
            foreach (SourceProject project in SourceProject.Under(root, folder))
            {
                results.Add(FolderDependencies.Analyse(project));
            }
        }

        TestContext.Out.WriteLine($"import circles and largest files in {root}");
        TestContext.Out.WriteLine();
        foreach (FolderDependencies result in results)
        {
            TestContext.Out.WriteLine(result.Describe());
            TestContext.Out.WriteLine();
        }

        Assert.That(results.Select(r => r.Project.Name), Does.Contain("HybridVmm.Hypervisor").And.Contain("HybridVmm.HostOS"), "the report found the src projects");
        if (root == RepositoryRoot.Path)
        {
            // On this checkout every name resolves: a folder edge is never lost to an unresolved name.
            Assert.That(results.Where(r => r.CompilationErrors.Count > 0).Select(r => $"{r.Project.Name}: {string.Join("; ", r.CompilationErrors.Take(3))}"), Is.Empty,
                "the analysis compiles each project without its generated sources; a name it cannot resolve would drop an edge");
        }
    }

    // Not HybridVmm.Hardware: X86Core is one partial class whose parts live in Cpu/State, Decode, Interp, System and
    // Exits, so those folders are one circle until the handlers take the CpuContext by ref instead of sharing fields.
    [TestCase("HybridVmm.Hypervisor")]
    [TestCase("HybridVmm.Guests")]
    [TestCase("HybridVmm.HostOS")]
    [TestCase("HybridVmm.Reports")]
    [TestCase("HybridVmm.Cli")]
    public void TheProjectsFoldersFormNoImportCircle(string project) =>
        Assert.That(FolderDependencies.CirclesOf(project).Select(c => string.Join(" <-> ", c.Select(FolderDependencies.Label))), Is.Empty);

    [Test]
    public void TarjanFindsACircleThroughThreeFoldersAndNotATree()
    {
        var graph = new Dictionary<string, IReadOnlySet<string>>
        {
            [""] = new HashSet<string> { "A" },
            ["A"] = new HashSet<string> { "B" },
            ["B"] = new HashSet<string> { "", "C" },
            ["C"] = new HashSet<string> { "D" },
            ["D"] = new HashSet<string>(),
        };

        Assert.That(FolderDependencies.StronglyConnected(graph), Is.EqualTo(new[] { new[] { "", "A", "B" } }));
    }
}
