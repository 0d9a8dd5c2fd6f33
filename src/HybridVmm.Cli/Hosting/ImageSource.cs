using HybridVmm.Guests;

namespace HybridVmm.Cli.Hosting;

internal static class ImageSource
{
    private const string EmbeddedPrefix = "embedded:";

    public static bool IsEmbedded(string image, out string name)
    {
        bool embedded = image.StartsWith(EmbeddedPrefix, StringComparison.Ordinal);
        name = embedded ? image[EmbeddedPrefix.Length..] : "";
        return embedded;
    }

    public static byte[] Read(string image) =>
        IsEmbedded(image, out string name)
            ? EmbeddedGuests.Load(name) ?? throw new InvalidOperationException($"no embedded guest '{name}'")
            : File.ReadAllBytes(image);
}
