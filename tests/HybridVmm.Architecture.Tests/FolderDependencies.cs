using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace HybridVmm.Architecture.Tests;

/// <summary>
/// What one project's folders use of each other, from its sources: every name a file uses (an identifier, a
/// member access, a base type, an object creation, the type of an expression) that resolves to a symbol
/// declared in the same project adds an edge from the file's folder to the folder of the declaration. A
/// strongly connected component of more than one folder is an import circle. References to other projects
/// resolve against the builds this test project references; a name that does not resolve adds nothing.
/// </summary>
public sealed class FolderDependencies
{
    private FolderDependencies(SourceProject project, IReadOnlyDictionary<string, IReadOnlySet<string>> edges,
        IReadOnlyList<IReadOnlyList<string>> circles, string largestFile, int largestFileLines, IReadOnlyList<string> errors)
    {
        Project = project;
        Edges = edges;
        Circles = circles;
        LargestFile = largestFile;
        LargestFileLines = largestFileLines;
        CompilationErrors = errors;
    }

    public SourceProject Project { get; }

    /// <summary>Folder ("" for the project root) to the other folders of the same project it uses.</summary>
    public IReadOnlyDictionary<string, IReadOnlySet<string>> Edges { get; }

    /// <summary>The import circles: strongly connected components of more than one folder, each sorted, largest first.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Circles { get; }

    /// <summary>Project-relative path of the file with the most lines.</summary>
    public string LargestFile { get; }

    public int LargestFileLines { get; }

    /// <summary>Compiler errors in the analysed sources (names that did not resolve); none when the tree matches the builds referenced.</summary>
    public IReadOnlyList<string> CompilationErrors { get; }

    /// <summary>The import circles of the project <paramref name="projectName"/> under src/ of the repository this test runs from.</summary>
    public static IReadOnlyList<IReadOnlyList<string>> CirclesOf(string projectName) =>
        Analyse(SourceProject.Under(RepositoryRoot.Path, "src").Single(p => p.Name == projectName)).Circles;

    public static FolderDependencies Analyse(SourceProject project)
    {
        CSharpParseOptions parse = new CSharpParseOptions(LanguageVersion.Latest).WithPreprocessorSymbols("NET", "NET10_0", "DEBUG");
        var trees = new List<SyntaxTree>();
        string largest = "";
        int largestLines = -1;
        foreach (string file in project.SourceFiles)
        {
            string text = File.ReadAllText(file);
            trees.Add(CSharpSyntaxTree.ParseText(text, parse, file));
            int lines = LineCount(text);
            if (lines > largestLines)
            {
                largestLines = lines;
                largest = Path.GetRelativePath(project.Directory, file).Replace('\\', '/');
            }
        }

        string globalUsings = string.Concat(project.GlobalUsings.Select(u => $"global using global::{u};\n"));
        trees.Add(CSharpSyntaxTree.ParseText(globalUsings, parse, "<global usings>"));

        var options = new CSharpCompilationOptions(project.IsExe ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary,
            nullableContextOptions: NullableContextOptions.Enable, allowUnsafe: true);
        CSharpCompilation compilation = CSharpCompilation.Create(project.AssemblyName, trees, References(project.AssemblyName), options);
        string[] errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error)
            .Select(d => $"{Path.GetFileName(d.Location.SourceTree?.FilePath)}: {d.GetMessage()}").ToArray();

        var edges = new SortedDictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (SyntaxTree tree in trees)
        {
            if (tree.FilePath == "<global usings>") continue;
            string from = project.FolderOf(tree.FilePath);
            if (!edges.TryGetValue(from, out SortedSet<string>? targets)) edges[from] = targets = new(StringComparer.Ordinal);
            SemanticModel model = compilation.GetSemanticModel(tree);
            foreach (SyntaxNode node in tree.GetRoot().DescendantNodes())
            {
                foreach (ISymbol symbol in Referenced(model, node))
                {
                    foreach (string folder in DeclaringFolders(project, compilation, symbol))
                    {
                        if (folder != from) targets.Add(folder);
                    }
                }
            }
        }

        var graph = edges.ToDictionary(e => e.Key, e => (IReadOnlySet<string>)e.Value, StringComparer.Ordinal);
        return new FolderDependencies(project, graph, StronglyConnected(graph), largest, largestLines, errors);
    }

    /// <summary>The project's dependency graph and circles as text, for the report.</summary>
    public string Describe()
    {
        var lines = new List<string>
        {
            $"{Project.Name}: {Project.SourceFiles.Count} files, {Edges.Count} folders, {Circles.Count} import circle(s); " +
            $"largest file {LargestFile} ({LargestFileLines} lines){(CompilationErrors.Count > 0 ? $"; {CompilationErrors.Count} compiler error(s), first: {CompilationErrors[0]}" : "")}",
        };
        foreach (IReadOnlyList<string> circle in Circles)
        {
            lines.Add($"  circle of {circle.Count}: {string.Join(", ", circle.Select(Label))}");
        }

        foreach ((string from, IReadOnlySet<string> to) in Edges.Where(e => e.Value.Count > 0))
        {
            lines.Add($"  {Label(from)} -> {string.Join(", ", to.Select(Label))}");
        }

        return string.Join("\n", lines);
    }

    public static string Label(string folder) => folder.Length == 0 ? "(root)" : folder;

    private static IEnumerable<ISymbol> Referenced(SemanticModel model, SyntaxNode node)
    {
        switch (node)
        {
            case SimpleNameSyntax name:
            {
                SymbolInfo info = model.GetSymbolInfo(name);
                if (info.Symbol is { } symbol) yield return symbol;
                else foreach (ISymbol candidate in info.CandidateSymbols) yield return candidate;
                if (name.Parent is not QualifiedNameSyntax && model.GetTypeInfo(name).Type is { } type) yield return type;
                break;
            }
            case BaseObjectCreationExpressionSyntax creation:
                if (model.GetSymbolInfo(creation).Symbol is { } constructor) yield return constructor;
                if (model.GetTypeInfo(creation).Type is { } created) yield return created;
                break;
            case InvocationExpressionSyntax or ElementAccessExpressionSyntax or BinaryExpressionSyntax or ForEachStatementSyntax or AwaitExpressionSyntax:
                // Operators, indexers, GetEnumerator and awaiters a file uses without naming them.
                if (node is ForEachStatementSyntax loop)
                {
                    ForEachStatementInfo each = model.GetForEachStatementInfo(loop);
                    if (each.GetEnumeratorMethod is { } getEnumerator) yield return getEnumerator;
                }
                else if (model.GetSymbolInfo(node).Symbol is { } used) yield return used;
                break;
        }
    }

    private static IEnumerable<string> DeclaringFolders(SourceProject project, Compilation compilation, ISymbol symbol)
    {
        symbol = symbol switch
        {
            IAliasSymbol alias => alias.Target,
            _ => symbol,
        };
        if (symbol is INamespaceSymbol or ILocalSymbol or IParameterSymbol or IRangeVariableSymbol or ILabelSymbol or IDiscardSymbol or IDynamicTypeSymbol)
        {
            // A local or parameter is declared in the same file; its type was counted where it was named.
            yield break;
        }

        if (symbol is IArrayTypeSymbol array) symbol = array.ElementType;
        if (symbol is IPointerTypeSymbol pointer) symbol = pointer.PointedAtType;
        symbol = symbol.OriginalDefinition;
        if (!SymbolEqualityComparer.Default.Equals(symbol.ContainingAssembly, compilation.Assembly)) yield break;
        foreach (SyntaxReference reference in symbol.DeclaringSyntaxReferences)
        {
            string path = reference.SyntaxTree.FilePath;
            if (path.Length > 0 && path != "<global usings>") yield return project.FolderOf(path);
        }

        if (symbol is INamedTypeSymbol { IsGenericType: true } generic && !generic.IsDefinition)
        {
            foreach (ITypeSymbol argument in generic.TypeArguments)
            {
                foreach (string folder in DeclaringFolders(project, compilation, argument)) yield return folder;
            }
        }
    }

    /// <summary>The runtime's trusted platform assemblies plus every assembly beside this test (the src builds,
    /// Iced, the hosting packages), except the one being analysed, which comes from sources.</summary>
    private static IEnumerable<MetadataReference> References(string analysedAssembly)
    {
        var byName = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        string tpa = (string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") ?? "";
        foreach (string path in tpa.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            byName.TryAdd(Path.GetFileNameWithoutExtension(path), path);
        }

        foreach (string path in Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
        {
            byName.TryAdd(Path.GetFileNameWithoutExtension(path), path);
        }

        byName.Remove(analysedAssembly);
        byName.Remove(typeof(FolderDependencies).Assembly.GetName().Name!);
        return byName.Values.OrderBy(p => p, StringComparer.Ordinal).Select(p => MetadataReference.CreateFromFile(p)).ToImmutableArray();
    }

    private static int LineCount(string text)
    {
        if (text.Length == 0) return 0;
        int lines = text.Count(c => c == '\n');
        return text[^1] == '\n' ? lines : lines + 1;
    }

    /// <summary>Tarjan's algorithm; components of more than one node, members sorted, largest first.</summary>
    public static IReadOnlyList<IReadOnlyList<string>> StronglyConnected(IReadOnlyDictionary<string, IReadOnlySet<string>> graph)
    {
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var low = new Dictionary<string, int>(StringComparer.Ordinal);
        var onStack = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        var components = new List<IReadOnlyList<string>>();
        int next = 0;

        void Visit(string v)
        {
            index[v] = low[v] = next++;
            stack.Push(v);
            onStack.Add(v);
            foreach (string w in graph.TryGetValue(v, out IReadOnlySet<string>? targets) ? targets : new HashSet<string>())
            {
                if (!index.ContainsKey(w))
                {
                    Visit(w);
                    low[v] = Math.Min(low[v], low[w]);
                }
                else if (onStack.Contains(w))
                {
                    low[v] = Math.Min(low[v], index[w]);
                }
            }

            if (low[v] == index[v])
            {
                var component = new List<string>();
                string w;
                do
                {
                    w = stack.Pop();
                    onStack.Remove(w);
                    component.Add(w);
                } while (w != v);
                if (component.Count > 1) components.Add(component.OrderBy(c => c, StringComparer.Ordinal).ToList());
            }
        }

        foreach (string v in graph.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            if (!index.ContainsKey(v)) Visit(v);
        }

        return components.OrderByDescending(c => c.Count).ThenBy(c => c[0], StringComparer.Ordinal).ToList();
    }
}
