using System.Reflection;

namespace HybridVmm.Architecture.Tests;

/// <summary>
/// The lecture's Type 3 picture: every reference between the src projects points down. Checked twice, in the
/// csproj files and in the compiled assemblies' references.
/// </summary>
public class LayeringTests
{
    /// <summary>Lower layers first; a project may reference only projects of a lower layer. Guests sits beside Hardware.</summary>
    private static readonly Dictionary<string, int> Layers = new()
    {
        ["HybridVmm.Hardware"] = 0,
        ["HybridVmm.Guests"] = 0,
        ["HybridVmm.Hypervisor"] = 1,
        ["HybridVmm.HostOS"] = 2,
        ["HybridVmm.Reports"] = 3,
        ["HybridVmm.Cluster"] = 3,
        ["HybridVmm.Cli"] = 4,
    };

    /// <summary>Assembly name to project name (the Cli builds hybridvmm.dll).</summary>
    private static readonly Dictionary<string, string> Assemblies = new()
    {
        ["HybridVmm.Hardware"] = "HybridVmm.Hardware",
        ["HybridVmm.Guests"] = "HybridVmm.Guests",
        ["HybridVmm.Hypervisor"] = "HybridVmm.Hypervisor",
        ["HybridVmm.HostOS"] = "HybridVmm.HostOS",
        ["HybridVmm.Reports"] = "HybridVmm.Reports",
        ["HybridVmm.Cluster"] = "HybridVmm.Cluster",
        ["hybridvmm"] = "HybridVmm.Cli",
    };

    [Test]
    public void EveryLayerIsAProjectUnderSrc()
    {
        Assert.That(SourceProject.Under(RepositoryRoot.Path, "src").Select(p => p.Name), Is.SupersetOf(Layers.Keys));
    }

    /// <summary>A project not in <see cref="Layers"/> (a new one) is not judged here, except that src never references tests or samples.</summary>
    [Test]
    public void ProjectReferencesPointDownThePicture()
    {
        var upward = new List<string>();
        foreach (SourceProject project in SourceProject.Under(RepositoryRoot.Path, "src").Where(p => Layers.ContainsKey(p.Name)))
        {
            upward.AddRange(project.ProjectReferences
                .Where(r => Layers.TryGetValue(r, out int layer) ? layer >= Layers[project.Name] : IsTestOrSample(r))
                .Select(r => $"{project.Name} -> {r}"));
        }

        Assert.That(upward, Is.Empty);
    }

    [Test]
    public void CompiledAssembliesReferenceOnlyLowerLayers()
    {
        Assembly[] built =
        [
            typeof(Hardware.Cpu.X86Core).Assembly,
            typeof(Guests.EmbeddedGuests).Assembly,
            typeof(Hypervisor.HypervisorKernel).Assembly,
            typeof(HostOS.HybridSystem).Assembly,
            typeof(Reports.SummaryTable).Assembly,
            typeof(Cli.Common.ExitStatus).Assembly,
        ];
        var upward = new List<string>();
        foreach (Assembly assembly in built)
        {
            string project = Assemblies[assembly.GetName().Name!];
            foreach (AssemblyName reference in assembly.GetReferencedAssemblies())
            {
                if (Assemblies.TryGetValue(reference.Name!, out string? target) && Layers[target] >= Layers[project])
                {
                    upward.Add($"{project} -> {target}");
                }
            }
        }

        Assert.That(upward, Is.Empty);
        Assert.That(typeof(Hardware.Cpu.X86Core).Assembly.GetReferencedAssemblies().Select(r => r.Name), Has.None.StartsWith("HybridVmm"),
            "the hardware knows nothing of partitions, kernels or guests");
    }

    [Test]
    public void TheRootPartitionRendersNoText()
    {
        MethodInfo[] renderers = typeof(HostOS.HybridSystem).Assembly.GetExportedTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => m.Name.StartsWith("Render", StringComparison.Ordinal))
            .ToArray();
        Assert.That(renderers.Select(m => $"{m.DeclaringType!.Name}.{m.Name}"), Is.Empty, "tables and reports belong in HybridVmm.Reports");
    }

    private static bool IsTestOrSample(string project) => project.EndsWith(".Tests", StringComparison.Ordinal) || project.Contains(".Samples.", StringComparison.Ordinal) || project == "HybridVmm.Testing";
}
