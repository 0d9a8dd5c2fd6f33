using HybridVmm.Cli.Tracing;
using HybridVmm.Cli.Common;
using System.CommandLine;
using HybridVmm.Cli.Commands;
using HybridVmm.Hypervisor.Tracing;

var root = new RootCommand("HybridVmm: a hybrid (Type 3) hypervisor simulator that boots real Multiboot guests.\n" +
    "With no command it runs the embedded default scenario: several guests side by side in their own partitions.");
var trace = new Option<string?>("--trace") { Description = "Write the default scenario's trace to this file" };
root.Options.Add(trace);
var traceLimit = new Option<string>("--trace-limit")
{
    Description = "The most a trace file may hold, e.g. 64M or 2G (0 = no limit); it then ends with a line saying so",
    DefaultValueFactory = _ => "1G",
    Recursive = true,
};
root.Options.Add(traceLimit);
var traceRotate = new Option<int>("--trace-rotate")
{
    Description = "When a trace file reaches --trace-limit, move it to FILE.1 (FILE.1 to FILE.2, ...) and go on in a new FILE, keeping this many old files (0, the default: the file ends at the limit)",
    Recursive = true,
};
root.Options.Add(traceRotate);
var tier = new Option<string>("--tier")
{
    Description = "How guest code runs: jit (hot code compiled to IL, the default) or interp (the interpreter alone); the output is the same",
    DefaultValueFactory = _ => "jit",
    Recursive = true,
};
tier.CompletionSources.Add("jit", "interp");
tier.Validators.Add(r =>
{
    string? value = r.GetValueOrDefault<string>();
    if (value is not ("jit" or "interp"))
    {
        r.AddError($"--tier must be jit or interp, not '{value}'");
    }
});
root.Options.Add(tier);
root.Subcommands.Add(RunCommand.Create());
root.Subcommands.Add(RestoreCommand.Create());
root.Subcommands.Add(CloneCommand.Create());
root.Subcommands.Add(ReceiveCommand.Create());
root.Subcommands.Add(CompareTypesCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(VmCommand.Create());
root.Subcommands.Add(TraceCommand.Create());
root.Subcommands.Add(HybridVmm.Cli.Cluster.ClusterCommands.Create());
// --version names the commit as well as the version (BuildVersion), not only the informational version.
foreach (Option option in root.Options)
{
    if (option is VersionOption version)
    {
        version.Action = new PrintVersionAction();
    }
}

root.SetAction(async (result, cancellationToken) =>
{
    TraceRecorder? recorder = TraceFiles.Open(result.GetValue(trace), Console.Error);
    if (recorder is null)
    {
        return ExitStatus.CannotWrite;
    }

    using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
    using var signals = new TerminationSignals(run);
    int status = await DefaultScenario.RunAsync(Console.Out, Console.Error, recorder, run.Token);
    return run.IsCancellationRequested ? TerminationSignals.ReportInterrupted(Console.Error) : status;
});

ParseResult parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (System.CommandLine.Parsing.ParseError error in parsed.Errors)
    {
        Console.Error.WriteLine($"hybridvmm: error: {error.Message}");
    }

    Console.Error.WriteLine("Try 'hybridvmm --help'.");
    return ExitStatus.Usage;
}

if (!SizeParser.TryParse(parsed.GetValue(traceLimit)!, out ulong traceLimitBytes, out string traceLimitError) || traceLimitBytes > long.MaxValue)
{
    Console.Error.WriteLine($"hybridvmm: error: --trace-limit: {traceLimitError}");
    return ExitStatus.Usage;
}

HostOutput.TraceLimitBytes = (long)traceLimitBytes;
if (parsed.GetValue(traceRotate) is < 0 or > HostOutput.MaxTraceRotate)
{
    Console.Error.WriteLine($"hybridvmm: error: --trace-rotate must be 0 to {HostOutput.MaxTraceRotate}, not {parsed.GetValue(traceRotate)}");
    return ExitStatus.Usage;
}

HostOutput.TraceRotateKeep = parsed.GetValue(traceRotate);
HybridVmm.Hardware.Cpu.X86Core.DefaultTier = parsed.GetValue(tier) == "interp"
    ? HybridVmm.Hardware.Cpu.ExecutionTier.Interpreter
    : HybridVmm.Hardware.Cpu.ExecutionTier.Jit;
HostOutput.GuardStandardOutput();
try
{
    int status = await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    return HostOutput.Finish(status, Console.Error);
}
catch (Exception e)
{
    // Only a simulator bug gets here; a guest's misbehaviour is reported as data with its own status.
    Console.Error.WriteLine($"hybridvmm: internal error (a bug in HybridVmm, please report it): {e}");
    return ExitStatus.InternalError;
}

/// <summary>The action of <c>--version</c>: the version and the commit the build came from.</summary>
internal sealed class PrintVersionAction : System.CommandLine.Invocation.SynchronousCommandLineAction
{
    public override int Invoke(ParseResult parseResult)
    {
        parseResult.InvocationConfiguration.Output.WriteLine(BuildVersion.Text);
        return ExitStatus.Success;
    }
}
