using System.Reflection;

namespace HybridVmm.Guests;

/// <summary>The sample guest ELFs from samples/guests/bin, embedded so the default scenario needs no files.</summary>
public static class EmbeddedGuests
{
    private const string Prefix = "guests/";

    public static IReadOnlyList<string> Names
    {
        get
        {
            var names = new List<string>();
            foreach (string resource in typeof(EmbeddedGuests).Assembly.GetManifestResourceNames())
            {
                if (resource.StartsWith(Prefix, StringComparison.Ordinal) && resource.EndsWith(".elf", StringComparison.Ordinal))
                {
                    names.Add(resource[Prefix.Length..^4]);
                }
            }

            names.Sort(StringComparer.Ordinal);
            return names;
        }
    }

    /// <summary>The bytes of an embedded guest, e.g. "hello", or null if there is none by that name.</summary>
    public static byte[]? Load(string name)
    {
        using Stream? stream = typeof(EmbeddedGuests).Assembly.GetManifestResourceStream(Prefix + name + ".elf");
        if (stream is null)
        {
            return null;
        }

        byte[] bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }
}
