namespace HybridVmm.Cli.Terminal;

/// <summary>
/// Standard input's terminal in raw mode for as long as this lives: keys reach the program one by one, unechoed, and
/// Ctrl-C, Ctrl-Z and Ctrl-\ are bytes rather than signals (they belong to the guest). The settings found are put
/// back on <see cref="Dispose"/>, and also if the process exits or crashes first, so a terminal is never left raw.
/// </summary>
internal sealed class RawTerminal : IDisposable
{
    private readonly byte[] _saved;
    private int _restored;

    private RawTerminal(byte[] saved)
    {
        _saved = saved;
        AppDomain.CurrentDomain.ProcessExit += OnProcessEnd;
        AppDomain.CurrentDomain.UnhandledException += OnProcessEnd;
    }

    /// <summary>Switches stdin's terminal to raw mode; null (with the reason) when it cannot.</summary>
    public static RawTerminal? Enter(out string? error)
    {
        if (Libc.GetAttributes(Libc.StdinFileno, out error) is not { } saved)
        {
            return null;
        }

        byte[] raw = Libc.MakeRaw(saved);
        Libc.KeepOutputProcessing(raw);
        if (!Libc.SetAttributes(Libc.StdinFileno, raw))
        {
            error = "tcsetattr failed";
            return null;
        }

        return new RawTerminal(saved);
    }

    public void Dispose()
    {
        Restore();
        AppDomain.CurrentDomain.ProcessExit -= OnProcessEnd;
        AppDomain.CurrentDomain.UnhandledException -= OnProcessEnd;
    }

    private void OnProcessEnd(object? sender, EventArgs e) => Restore();

    private void Restore()
    {
        if (Interlocked.Exchange(ref _restored, 1) == 0)
        {
            Libc.SetAttributes(Libc.StdinFileno, _saved);
        }
    }
}
