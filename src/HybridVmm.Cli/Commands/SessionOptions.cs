using HybridVmm.Cli.Common;
using System.CommandLine;

namespace HybridVmm.Cli.Commands;

/// <summary>Options shared by the commands that run one VM in the foreground (<c>run</c>, <c>restore</c>).</summary>
internal sealed class SessionOptions
{
    private readonly Option<string?> _trace = new("--trace") { Description = "Write the readable trace to this file" };
    private readonly Option<long> _max = new("--max-instructions") { Description = "Stop the guest after N instructions in total (0 = no limit)" };
    private readonly Option<long> _saveAt = new("--save-at") { Description = "Pause the guest after N instructions in total (with --cpus, the boot vCPU's) and save it to --save-to" };
    private readonly Option<string?> _saveTo = new("--save-to") { Description = "Snapshot file written at --save-at (atomically)" };
    private readonly Option<long> _migrateAt = new("--migrate-at") { Description = "Start live migration after N instructions in total (with --cpus, the boot vCPU's)" };
    private readonly Option<string?> _migrateTo = new("--migrate-to") { Description = "HOST:PORT of a 'hybridvmm receive' to live-migrate the guest to" };
    private readonly Option<double> _migrateTimeout = new("--migrate-timeout")
    {
        Description = "Seconds the paused guest waits for the target to answer before the migration fails and the guest resumes here",
        DefaultValueFactory = _ => HostOS.Migration.MigrationOptions.DefaultPeerTimeout.TotalSeconds,
    };
    private readonly Option<string?> _tokenFile = new("--token-file") { Description = "The migration token shared with the receive --token-file (without it, only a receive --insecure takes the guest)" };
    private readonly Option<string?> _serialInput = new("--serial-input")
    {
        Description = "COM1's input: a file, or - for stdin, delivered deterministically (the same input gives the same run). " +
            "Without it, a terminal on stdin is the console (raw mode; Ctrl-A x quits, Ctrl-A h lists the keys)",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(_trace);
        command.Options.Add(_max);
        command.Options.Add(_saveAt);
        command.Options.Add(_saveTo);
        command.Options.Add(_migrateAt);
        command.Options.Add(_migrateTo);
        command.Options.Add(_tokenFile);
        command.Options.Add(_migrateTimeout);
        command.Options.Add(_serialInput);
    }

    public Values Read(ParseResult result) =>
        new(result.GetValue(_trace), result.GetValue(_max), result.GetValue(_saveAt), result.GetValue(_saveTo),
            result.GetValue(_migrateAt), result.GetValue(_migrateTo), result.GetValue(_serialInput), result.GetValue(_tokenFile), result.GetValue(_migrateTimeout));

    public sealed record Values(string? TracePath, long MaxInstructions, long SaveAt, string? SaveTo, long MigrateAt, string? MigrateTo, string? SerialInput = null,
        string? TokenFile = null, double MigrateTimeout = 30)
    {
        /// <summary>Where to pause the guest for a save or a migration (0 = never).</summary>
        public long PauseAt => SaveAt > 0 ? SaveAt : MigrateAt;

        /// <summary>A usage status and message when the combination is invalid, else null.</summary>
        public int? Validate(TextWriter stderr)
        {
            string? problem = MaxInstructions < 0 ? "--max-instructions must be zero or positive"
                : SaveAt < 0 ? "--save-at must be positive"
                : (SaveAt > 0) != !string.IsNullOrEmpty(SaveTo) ? "--save-at and --save-to go together"
                : MigrateAt < 0 ? "--migrate-at must be positive"
                : (MigrateAt > 0) != !string.IsNullOrEmpty(MigrateTo) ? "--migrate-at and --migrate-to go together"
                : SaveAt > 0 && MigrateAt > 0 ? "a guest is either saved or migrated, not both"
                : MigrateTo is not null && !Endpoints.TryParse(MigrateTo, out _) ? $"--migrate-to '{MigrateTo}' is not HOST:PORT"
                : TokenFile is not null && MigrateTo is null ? "--token-file is the migration token: it goes with --migrate-to"
                : !(MigrateTimeout is > 0 and <= 86_400) ? $"--migrate-timeout must be a number of seconds above 0 and at most 86400, not {MigrateTimeout}"
                : null;
            if (problem is null)
            {
                return null;
            }

            stderr.WriteLine($"hybridvmm: error: {problem}");
            return ExitStatus.Usage;
        }
    }
}
