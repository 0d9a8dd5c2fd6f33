namespace HybridVmm.HostOS.Vm;

/// <summary>
/// What a VM's name may hold. A name goes into every trace line, every log line and the summary table, and into
/// file names: a newline would forge a line, and an escape sequence would drive the operator's terminal.
/// </summary>
public static class VmNames
{
    /// <summary>The longest name, in characters (a file name's usual limit).</summary>
    public const int MaxLength = 255;

    /// <summary>Null when <paramref name="name"/> is a usable VM name, else what is wrong with it (to follow the word "name").</summary>
    public static string? Problem(string name)
    {
        if (name.Length == 0)
        {
            return "is empty";
        }

        if (name.Length > MaxLength)
        {
            return $"is {name.Length} characters long, more than {MaxLength}";
        }

        foreach (char c in name)
        {
            if (char.IsControl(c) || c is '\u2028' or '\u2029')
            {
                return $"'{Printable(name)}' holds a control character (U+{(int)c:X4}, such as a newline or an escape); names are printed and traced";
            }
        }

        return null;
    }

    /// <summary>A name made safe to print: every control character becomes '?' (for a name taken from a file name).</summary>
    public static string Printable(string name) =>
        string.Create(Math.Min(name.Length, MaxLength), name, static (span, source) =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                char c = source[i];
                span[i] = char.IsControl(c) || c is '\u2028' or '\u2029' ? '?' : c;
            }
        });
}
