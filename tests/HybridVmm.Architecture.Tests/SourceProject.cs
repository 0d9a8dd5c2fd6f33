using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace HybridVmm.Architecture.Tests;

/// <summary>One C# project as its files on disk say it: the csproj and the .cs files beside it (bin/ and obj/ left out).</summary>
public sealed record SourceProject(string Name, string Directory, string AssemblyName, bool IsExe, IReadOnlyList<string> ProjectReferences,
    IReadOnlyList<string> GlobalUsings, IReadOnlyList<string> SourceFiles)
{
    /// <summary>What Microsoft.NET.Sdk adds with ImplicitUsings enabled (Directory.Build.props turns it on everywhere).</summary>
    public static readonly string[] ImplicitUsings =
        ["System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks"];

    /// <summary>The projects under <paramref name="root"/>/<paramref name="folder"/> (src, samples, tests), by name.</summary>
    public static IReadOnlyList<SourceProject> Under(string root, string folder)
    {
        string dir = Path.Combine(root, folder);
        if (!System.IO.Directory.Exists(dir)) return [];
        return System.IO.Directory.EnumerateFiles(dir, "*.csproj", SearchOption.AllDirectories)
            .Where(p => !IsBuildOutput(Path.GetRelativePath(dir, p)))
            .Select(Read)
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ToList();
    }

    public static SourceProject Read(string csproj)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(csproj))!;
        string name = Path.GetFileNameWithoutExtension(csproj);
        XDocument xml = XDocument.Load(csproj);
        string? Property(string property) => xml.Descendants(property).Select(e => e.Value.Trim()).LastOrDefault();
        string[] references = xml.Descendants("ProjectReference")
            .Select(e => Path.GetFileNameWithoutExtension(e.Attribute("Include")!.Value.Replace('\\', '/')))
            .ToArray();
        string[] usings = xml.Descendants("Using")
            .Where(e => e.Attribute("Include") is not null && e.Attribute("Alias") is null && e.Attribute("Static") is null)
            .Select(e => e.Attribute("Include")!.Value)
            .ToArray();
        string[] files = System.IO.Directory.EnumerateFiles(directory, "*.cs", SearchOption.AllDirectories)
            .Where(f => !IsBuildOutput(Path.GetRelativePath(directory, f)))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToArray();
        return new SourceProject(name, directory, Property("AssemblyName") ?? name,
            string.Equals(Property("OutputType"), "Exe", StringComparison.OrdinalIgnoreCase), references, [.. ImplicitUsings, .. usings], files);
    }

    /// <summary>The folder of a file relative to the project, with '/' separators; "" for the project's root folder.</summary>
    public string FolderOf(string file)
    {
        string relative = Path.GetRelativePath(Directory, Path.GetDirectoryName(file)!);
        return relative == "." ? "" : relative.Replace('\\', '/');
    }

    private static bool IsBuildOutput(string relativePath) =>
        Regex.IsMatch(relativePath.Replace('\\', '/'), @"(^|/)(bin|obj)/");
}
