using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace HybridVmm.Cli.Api;

/// <summary>
/// The browser dashboard (docs/serve.md#the-dashboard): one page, its script and its style, and the vendored xterm.js
/// (Dashboard/vendor/README.md), embedded in the assembly and served at <c>/</c> and <c>/dashboard/PATH</c>. The page
/// draws the Type 3 picture from the management API's own routes, so it can show nothing the API does not; nothing is
/// loaded from outside the host. A path is only ever a key into the embedded files, never a file on the host.
/// </summary>
public static class DashboardAssets
{
    private static readonly Dictionary<string, (byte[] Bytes, string ContentType)> Files = Load();

    public static void Map(WebApplication app)
    {
        app.MapGet("/", () => Serve("index.html")).ExcludeFromDescription();
        app.MapGet("/dashboard/{**file}", (string? file) => Serve(file ?? "")).ExcludeFromDescription();
    }

    private static IResult Serve(string file) =>
        Files.TryGetValue(file, out var asset)
            ? Results.Bytes(asset.Bytes, asset.ContentType)
            : Results.Problem(detail: $"the dashboard has no file '{file}'", statusCode: 404, title: "Not found");

    private static Dictionary<string, (byte[], string)> Load()
    {
        var files = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        System.Reflection.Assembly assembly = typeof(DashboardAssets).Assembly;
        foreach (string resource in assembly.GetManifestResourceNames())
        {
            const string prefix = "dashboard/";
            if (!resource.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }

            using Stream stream = assembly.GetManifestResourceStream(resource)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            string name = resource[prefix.Length..];
            string type = Path.GetExtension(name) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                "" => "text/plain; charset=utf-8", // vendor/xterm/LICENSE
                _ => "application/octet-stream",
            };
            files[name] = (copy.ToArray(), type);
        }

        return files;
    }
}
