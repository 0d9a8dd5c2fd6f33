using System.Diagnostics;
using System.Globalization;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Migration;
using HybridVmm.HostOS.Vm;

namespace HybridVmm.Cli.Terminal;

/// <summary>
/// A live status line on stderr for long work (<c>run</c>, <c>restore</c>, <c>bench</c>, <c>clone</c>): instructions,
/// MIPS and virtual time, redrawn in place at most four times a second at the scheduler's round barrier; or, for a
/// live migration (<c>run --migrate-to</c>, <c>receive</c>, <c>vm migrate</c>), its rounds and the pages and bytes moved. Only when
/// stderr is a terminal: scripted output, a redirected stderr and the byte-identical stdout never see it. It reads the
/// machine and never feeds it, so guest output and traces are the same with or without it.
/// </summary>
internal sealed class StatusLine : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);

    private readonly HybridSystem? _system;
    private readonly TextWriter _stderr;
    private readonly string _label;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly object _gate = new();
    private TimeSpan _drawnAt;
    private bool _drawn;
    private bool _closed;

    private StatusLine(HybridSystem? system, TextWriter stderr, string label)
    {
        _system = system;
        _stderr = stderr;
        _label = label;
        if (system is not null)
        {
            system.Kernel.Scheduler.RoundCompleted += OnRound;
        }
    }

    /// <summary>
    /// A status line for <paramref name="system"/>, or null when stderr is not a terminal (or TERM is dumb). With
    /// <paramref name="besideGuestOutput"/> the guest writes to stdout as it runs, so a terminal stdout would mix its lines
    /// with the status: then the line is drawn only when stdout goes elsewhere (a file, a pipe).
    /// </summary>
    public static StatusLine? Start(HybridSystem system, TextWriter stderr, string label, bool besideGuestOutput) =>
        Shown(besideGuestOutput) ? new StatusLine(system, stderr, label) : null;

    /// <summary>A status line for a live migration, drawn by <see cref="Show"/>; null as for <see cref="Start"/>.</summary>
    /// <param name="label">Who moves, and where: "cpu: migrating to 127.0.0.1:6600", "receiving from 127.0.0.1:40000".</param>
    public static StatusLine? ForMigration(TextWriter stderr, string label, bool besideGuestOutput) =>
        Shown(besideGuestOutput) ? new StatusLine(null, stderr, label) : null;

    private static bool Shown(bool besideGuestOutput) =>
        !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("TERM") is not "dumb" && (!besideGuestOutput || Console.IsOutputRedirected);

    /// <summary>The text of a migration's line: the round, and the pages and bytes moved so far.</summary>
    public static string Format(string label, MigrationProgress progress, bool receiving)
    {
        string moved = receiving ? "received" : "sent";
        string where = progress.Phase == MigrationPhase.Final
            ? "final copy"
            : receiving ? $"{progress.Round} pre-copy round{(progress.Round == 1 ? "" : "s")}" : $"pre-copy round {progress.Round}";
        return string.Create(CultureInfo.InvariantCulture,
            $"hybridvmm: {label}: {where}, {progress.Pages:N0} pages ({progress.Bytes / 1048576.0:0.0} MiB) {moved}");
    }

    /// <summary>Draws a migration's progress: the first report and the final copy always, the others at most four times a second.</summary>
    public void Show(MigrationProgress progress, bool receiving) =>
        Draw(Format(_label, progress, receiving), force: progress.Phase == MigrationPhase.Final);

    /// <summary>The text of the line: what the machine's guests have done so far.</summary>
    public static string Format(string label, long instructions, TimeSpan elapsed, long virtualTicks)
    {
        double mips = elapsed.TotalSeconds > 0 ? instructions / elapsed.TotalSeconds / 1e6 : 0;
        return string.Create(CultureInfo.InvariantCulture,
            $"hybridvmm: {label}: {instructions:N0} instructions, {mips:0.0} MIPS, virtual time {virtualTicks / 1e9:0.000} s");
    }

    private void OnRound()
    {
        TimeSpan now = _clock.Elapsed;
        if (now - _drawnAt < Interval)
        {
            return;
        }

        long instructions = 0;
        foreach (VirtualMachine vm in _system!.Root.VirtualMachines)
        {
            instructions += vm.Statistics.InstructionsRetired;
        }

        Draw(Format(_label, instructions, now, _system.Kernel.Clock.Ticks), force: true);
    }

    private void Draw(string text, bool force)
    {
        TimeSpan now = _clock.Elapsed;
        lock (_gate)
        {
            if (_closed || (!force && _drawn && now - _drawnAt < Interval))
            {
                return;
            }

            _drawnAt = now;
            Write("\r\u001b[K" + text);
            _drawn = true;
        }
    }

    /// <summary>Removes the line, so that what stderr says next starts on a clean line.</summary>
    public void Dispose()
    {
        if (_system is not null)
        {
            _system.Kernel.Scheduler.RoundCompleted -= OnRound;
        }

        lock (_gate)
        {
            _closed = true;
            if (_drawn)
            {
                Write("\r\u001b[K");
            }
        }
    }

    private void Write(string text)
    {
        try
        {
            _stderr.Write(text);
            _stderr.Flush();
        }
        catch (IOException)
        {
            // a terminal that went away: the status is not worth an error
        }
    }
}
