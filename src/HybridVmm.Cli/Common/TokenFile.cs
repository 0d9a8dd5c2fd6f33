namespace HybridVmm.Cli.Common;

/// <summary>
/// Reads a shared secret from a <c>--token-file</c>: serve's bearer token for its TCP API, and the key of a live
/// migration's challenge-response (<c>run --migrate-to</c>, <c>receive</c>). One reading and one rule for both: the
/// file must be a regular file of at most <see cref="MaxBytes"/> and hold one word of at least
/// <see cref="MinLength"/> characters (surrounding whitespace, such as a final newline, is ignored).
/// </summary>
internal static class TokenFile
{
    public const int MinLength = 16;

    /// <summary>A token file larger than this is not a token (and a device such as /dev/zero is refused before it is read).</summary>
    public const int MaxBytes = 4096;

    /// <summary>The token, or null after one message on <paramref name="stderr"/> and the documented <paramref name="status"/>:
    /// 66 when the file is missing, unreadable or not a regular file, 78 when it does not hold one token.</summary>
    public static string? TryRead(string path, TextWriter stderr, out int status)
    {
        if (InputFile.Check(path, "token file", MaxBytes, ExitStatus.Configuration, $"the {MaxBytes} bytes a token file may have") is { } refusal)
        {
            return Refuse(stderr, out status, refusal.Status, refusal.Message);
        }

        string token;
        try
        {
            token = File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Refuse(stderr, out status, ExitStatus.NoInput, $"cannot read token file '{path}': {e.Message}");
        }

        if (token.Length < MinLength || token.Any(char.IsWhiteSpace))
        {
            return Refuse(stderr, out status, ExitStatus.Configuration, $"token file '{path}' must hold one token of at least {MinLength} characters without spaces");
        }

        status = ExitStatus.Success;
        return token;
    }

    private static string? Refuse(TextWriter stderr, out int status, int exitStatus, string message)
    {
        stderr.WriteLine($"hybridvmm: error: {message}");
        status = exitStatus;
        return null;
    }
}
