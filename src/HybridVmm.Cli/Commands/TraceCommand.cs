using System.CommandLine;
using HybridVmm.Cli.Common;
using HybridVmm.Cli.Tracing;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm trace convert TEXT JSON</c>: a text trace, as any command writes it, in the Chrome trace-event form.</summary>
internal static class TraceCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("TRACE") { Description = "A text trace written by --trace FILE (docs/trace-format.md)" };
        var output = new Argument<string>("JSON") { Description = "The Chrome trace-event / Perfetto JSON file to write (ui.perfetto.dev, chrome://tracing)" };
        var convert = new Command("convert", "Write a text trace in the Chrome trace-event JSON form that Perfetto and chrome://tracing open") { input, output };
        convert.SetAction((result, cancellationToken) => ConvertAsync(result.GetValue(input)!, result.GetValue(output)!, cancellationToken));
        return new Command("trace", "Work with trace files") { convert };
    }

    private static async Task<int> ConvertAsync(string input, string output, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (InputFile.Check(input, "trace", long.MaxValue, ExitStatus.InvalidImage) is { } refused)
        {
            stderr.WriteLine($"hybridvmm: error: {refused.Message}");
            return refused.Status;
        }

        StreamReader reader;
        try
        {
            reader = new StreamReader(input);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"hybridvmm: error: cannot read trace '{input}': {e.Message}");
            return ExitStatus.NoInput;
        }

        using (reader)
        {
            ChromeTraceWriter writer;
            try
            {
                writer = new ChromeTraceWriter(new StreamWriter(output, append: false) { NewLine = "\n" });
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                stderr.WriteLine($"hybridvmm: error: cannot write '{output}': {e.Message}");
                return ExitStatus.CannotWrite;
            }

            try
            {
                using (writer)
                {
                    while (await reader.ReadLineAsync(cancellationToken) is { } line)
                    {
                        writer.WriteLine(line);
                    }
                }
            }
            catch (OperationCanceledException)
            {
                return TerminationSignals.ReportInterrupted(stderr);
            }
            catch (IOException e)
            {
                stderr.WriteLine($"hybridvmm: error: cannot convert '{input}' to '{output}': {e.Message}");
                return ExitStatus.CannotWrite;
            }
        }

        return ExitStatus.Success;
    }
}
