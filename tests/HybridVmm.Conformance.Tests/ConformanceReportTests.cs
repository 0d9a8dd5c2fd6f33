using System.Text;
using HybridVmm.Conformance.Tests.Fuzzing;

namespace HybridVmm.Conformance.Tests;

/// <summary>docs/conformance.md lists the supported instruction forms; this keeps that list true.</summary>
public class ConformanceReportTests
{
    private const string Begin = "<!-- supported-forms:begin -->", End = "<!-- supported-forms:end -->";

    [Test]
    public void ConformanceReportListsEverySupportedForm()
    {
        string expected = Table();
        string doc = File.ReadAllText(Path.Combine(RepositoryRoot(), "docs", "conformance.md"));
        int b = doc.IndexOf(Begin, StringComparison.Ordinal), e = doc.IndexOf(End, StringComparison.Ordinal);
        Assert.That(b >= 0 && e > b, $"docs/conformance.md needs the markers {Begin} ... {End}");
        string actual = doc[(b + Begin.Length)..e].Trim().ReplaceLineEndings("\n");
        Assert.That(actual, Is.EqualTo(expected.Trim()), "update docs/conformance.md with:\n" + expected);
    }

    /// <summary>One row per mnemonic: the number of supported forms and their Iced Code names.</summary>
    private static string Table()
    {
        var sb = new StringBuilder();
        sb.Append("| mnemonic | forms | Iced `Code`s |\n|---|---|---|\n");
        foreach (var group in SupportedForms.All.GroupBy(f => f.Mnemonic).OrderBy(g => g.Key.ToString(), StringComparer.Ordinal))
        {
            sb.Append($"| {group.Key.ToString().ToUpperInvariant()} | {group.Count()} | {string.Join(", ", group.Select(f => f.Code.ToString()))} |\n");
        }
        sb.Append($"\n{SupportedForms.All.Length} forms in all.\n");
        return sb.ToString();
    }

    private static string RepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "HybridVmm.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("HybridVmm.sln not found");
    }
}
