using System.Runtime.InteropServices;

namespace HybridVmm.Cli.Common;

/// <summary>
/// SIGINT, SIGTERM and SIGHUP during a foreground command (<c>run</c>, <c>restore</c>, <c>receive</c>, <c>clone</c>, <c>bench</c>,
/// <c>compare-types</c> and the default scenario): the first one cancels the run, so the
/// guest stops, the trace is flushed, a raw terminal is put back, and the status is 130 (docs/exit-codes.md); a second
/// one ends the process at once, as if nothing handled it.
/// </summary>
internal sealed class TerminationSignals : IDisposable
{
    private readonly PosixSignalRegistration[] _registrations;
    private int _received;

    public TerminationSignals(CancellationTokenSource run)
    {
        _registrations = new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP }
            .Select(signal => PosixSignalRegistration.Create(signal, context =>
            {
                if (Interlocked.Increment(ref _received) == 1)
                {
                    context.Cancel = true;
                    run.Cancel();
                }
            }))
            .ToArray();
    }

    /// <summary>A signal arrived and cancelled the run.</summary>
    public bool Received => Volatile.Read(ref _received) > 0;

    /// <summary>The one line and the status of an interrupted command (docs/exit-codes.md), once its guests are stopped and its trace flushed.</summary>
    public static int ReportInterrupted(TextWriter stderr)
    {
        stderr.WriteLine("hybridvmm: interrupted; guests stopped, trace flushed.");
        return ExitStatus.Interrupted;
    }

    public void Dispose()
    {
        foreach (PosixSignalRegistration registration in _registrations)
        {
            registration.Dispose();
        }
    }
}
