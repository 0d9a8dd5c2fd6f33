using System.Globalization;

namespace HybridVmm.Cli.Common;

/// <summary>Parses sizes as QEMU's -m does: a number with an optional K, M or G suffix (default M).</summary>
public static class SizeParser
{
    public static bool TryParse(string text, out ulong bytes, out string error)
    {
        bytes = 0;
        string t = text.Trim();
        ulong multiplier = 1024 * 1024;
        if (t.Length > 0 && char.IsLetter(t[^1]))
        {
            char suffix = char.ToUpperInvariant(t[^1]);
            t = t[..^1];
            if (t.EndsWith("i", StringComparison.OrdinalIgnoreCase))
            {
                t = t[..^1];
            }

            switch (suffix)
            {
                case 'B': multiplier = 1; break;
                case 'K': multiplier = 1024; break;
                case 'M': multiplier = 1024 * 1024; break;
                case 'G': multiplier = 1024 * 1024 * 1024; break;
                default:
                    error = $"'{text}' is not a size (use a number with K, M or G, e.g. 64M)";
                    return false;
            }
        }

        if (!ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) || n > ulong.MaxValue / multiplier)
        {
            error = $"'{text}' is not a size (use a number with K, M or G, e.g. 64M)";
            return false;
        }

        bytes = n * multiplier;
        error = "";
        return true;
    }

    /// <summary>Largest guest: 4 GiB, 3 GiB of it below 4 GiB and 1 GiB above, as QEMU's PC lays it out (<see cref="Hardware.Memory.GuestRam"/>).</summary>
    public const ulong MaxGuestBytes = Hardware.Memory.GuestRam.MaxBytes;

    /// <summary>Guest memory: 2 MiB to 4096 MiB, in whole 4 KiB pages.</summary>
    public static bool TryParseGuestMemory(string text, out ulong bytes, out string error)
    {
        bytes = 0;
        if (!TryParse(text, out ulong value, out error))
        {
            return false;
        }

        if (value < 2 * 1024 * 1024 || value > MaxGuestBytes || value % 4096 != 0)
        {
            error = $"guest memory {text} is out of range: give 2M to {MaxGuestBytes >> 20}M in whole 4 KiB pages";
            return false;
        }

        bytes = value;
        return true;
    }
}
