using HybridVmm.Cli.Tracing;
using OpenTelemetry.Metrics;
using HybridVmm.Cli.Api;
using HybridVmm.Cli.Cluster;
using HybridVmm.Cli.Common;
using HybridVmm.Cluster.Hosting;
using System.CommandLine;
using System.Net;
using HybridVmm.Cli.Hosting;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace HybridVmm.Cli.Commands;

/// <summary>
/// <c>hybridvmm serve [--config FILE]</c>: the kernel and the root partition as generic-host services, with the
/// management API (ASP.NET Core in the same host) on a Unix socket or a token-guarded TCP port.
/// </summary>
internal static class ServeCommand
{
    /// <summary>A configuration file larger than this is refused before it is read (a thousand VMs take about 200 KiB).</summary>
    private const long MaxConfigurationBytes = 16 << 20;

    public static Command Create()
    {
        var config = new Option<string?>("--config", "-c") { Description = "appsettings-style JSON with a HybridVmm section (without it: no VMs until the API creates them)" };
        var socket = new Option<string?>("--api-socket") { Description = $"The management API's Unix socket (default: {ApiListener.DefaultSocketPath})" };
        var listen = new Option<string?>("--listen") { Description = "Serve the management API on TCP HOST:PORT instead (needs --token-file)" };
        var tokenFile = new Option<string?>("--token-file") { Description = "A file holding the bearer token TCP clients must send" };
        var metrics = new Option<bool>("--metrics") { Description = "Export the HybridVmm meter through OpenTelemetry as a Prometheus scrape endpoint at /metrics on the API" };
        var migrationListen = new Option<string?>("--migration-listen") { Description = "Take live migrations from other hosts on TCP HOST:PORT (port 0 picks a free port)" };
        var migrationToken = new Option<string?>("--migration-token-file")
        {
            Description = "The migration token this host proves to its peers, in both directions (the same file as their --migration-token-file or run/receive --token-file)",
        };
        var migrationInsecure = new Option<bool>("--migration-insecure") { Description = "With --migration-listen: take VMs from anyone who can connect, without a token" };
        var migrationDisks = new Option<string[]>("--migration-disk")
        {
            Description = "With --migration-listen: a file an arriving VM's synthblk disk may be (shared storage; repeat for more); the stream names its disk by size and SHA-256, never by path",
            AllowMultipleArgumentsPerToken = false,
        };
        var command = new Command("serve", "Run the hypervisor and the root partition as hosted services, driven by a config file and the management API")
        {
            config, socket, listen, tokenFile, metrics, migrationListen, migrationToken, migrationInsecure, migrationDisks,
        };
        var cluster = new ClusterServeOptions();
        foreach (Option option in cluster.All)
        {
            command.Options.Add(option);
        }

        command.SetAction((result, cancellationToken) =>
            cluster.TryRead(result, Console.Error, out ClusterHostOptions? clusterOptions, out int refused)
            && TryReadMigration(result.GetValue(migrationListen), result.GetValue(migrationToken), result.GetValue(migrationInsecure),
                result.GetValue(migrationDisks) ?? [], Console.Error, out ServeMigrationOptions? migration, out refused)
                ? ServeAsync(result.GetValue(config), result.GetValue(socket), result.GetValue(listen), result.GetValue(tokenFile), result.GetValue(metrics),
                    clusterOptions, migration!, cancellationToken)
                : Task.FromResult(refused));
        return command;
    }

    /// <summary>serve's live-migration options, checked as receive checks its own: a listener needs a token or an explicit --migration-insecure.</summary>
    private static bool TryReadMigration(string? listen, string? tokenFile, bool insecure, string[] disks, TextWriter stderr, out ServeMigrationOptions? options,
        out int status)
    {
        options = null;
        status = ExitStatus.Usage;
        IPEndPoint? endpoint = null;
        if (listen is not null && !Endpoints.TryParse(listen, out endpoint))
        {
            stderr.WriteLine($"hybridvmm: error: --migration-listen '{listen}' is not HOST:PORT (for example 127.0.0.1:6600)");
            return false;
        }

        string? problem = insecure && listen is null ? "--migration-insecure goes with --migration-listen"
            : insecure && tokenFile is not null ? "give --migration-token-file or --migration-insecure, not both"
            : listen is not null && tokenFile is null && !insecure
                ? "--migration-listen needs --migration-token-file FILE, the token its sources also give, or --migration-insecure to take VMs from anyone who can connect"
            : disks.Length > 0 && listen is null ? "--migration-disk goes with --migration-listen"
            : null;
        if (problem is not null)
        {
            stderr.WriteLine($"hybridvmm: error: {problem}");
            return false;
        }

        byte[]? key = null;
        if (tokenFile is not null)
        {
            if (TokenFile.TryRead(tokenFile, stderr, out status) is not { } token)
            {
                return false;
            }

            key = HybridVmm.HostOS.Migration.MigrationHandshake.Key(token);
        }

        foreach (string disk in disks)
        {
            if (InputFile.RefuseDiskImage(disk, stderr) is { } diskRefused)
            {
                status = diskRefused;
                return false;
            }
        }

        options = new ServeMigrationOptions { Key = key, Listen = endpoint, Disks = disks.Select(Path.GetFullPath).Distinct().ToArray() };
        return true;
    }

    private static async Task<int> ServeAsync(string? configPath, string? socketPath, string? listen, string? tokenFile, bool metrics,
        ClusterHostOptions? cluster, ServeMigrationOptions migration, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (configPath is not null && InputFile.Check(configPath, "configuration file", MaxConfigurationBytes, ExitStatus.Configuration) is { } refusal)
        {
            stderr.WriteLine($"hybridvmm: error: {refusal.Message}");
            return refusal.Status;
        }

        IPEndPoint? endpoint = null;
        if (listen is not null && !Endpoints.TryParse(listen, out endpoint))
        {
            stderr.WriteLine($"hybridvmm: error: --listen '{listen}' is not HOST:PORT (for example 127.0.0.1:8080)");
            return ExitStatus.Usage;
        }

        HybridVmmOptions options;
        IConfigurationRoot configuration;
        try
        {
            configuration = configPath is null
                ? new ConfigurationBuilder().AddInMemoryCollection([new($"{HybridVmmOptions.Section}:HostMemory", "512M")]).Build()
                : new ConfigurationBuilder().AddJsonFile(Path.GetFullPath(configPath), optional: false).Build();
            IConfigurationSection section = configuration.GetSection(HybridVmmOptions.Section);
            if (!section.Exists())
            {
                stderr.WriteLine($"hybridvmm: error: {configPath} has no \"{HybridVmmOptions.Section}\" section");
                return ExitStatus.Configuration;
            }

            if (UnknownKeys(section) is { Count: > 0 } unknown)
            {
                foreach (string problem in unknown)
                {
                    stderr.WriteLine($"hybridvmm: error: {configPath}: {problem}");
                }

                return ExitStatus.Configuration;
            }

            options = section.Get<HybridVmmOptions>(b => b.ErrorOnUnknownConfiguration = true) ?? new HybridVmmOptions();
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or InvalidOperationException)
        {
            Exception innermost = e;
            while (innermost.InnerException is not null)
            {
                innermost = innermost.InnerException;
            }

            stderr.WriteLine($"hybridvmm: error: invalid configuration in {configPath}: {innermost.Message}");
            return ExitStatus.Configuration;
        }

        ValidateOptionsResult validation = new HybridVmmOptionsValidator().Validate(null, options);
        if (validation.Failed)
        {
            foreach (string failure in validation.Failures)
            {
                stderr.WriteLine($"hybridvmm: error: {configPath}: {failure}");
            }

            return ExitStatus.Configuration;
        }

        // Every image is read and checked before the host starts, so a bad one stops nothing that has begun.
        if (await CheckImagesAsync(options, configPath, stderr, cancellationToken) is { } imageRefused)
        {
            return imageRefused;
        }

        ApiListener? api = ApiListener.TryOpen(socketPath, endpoint, tokenFile, stderr, out int refused);
        if (api is null)
        {
            return refused;
        }

        TraceRecorder? trace = TraceFiles.Open(options.Trace, stderr);
        if (trace is null)
        {
            api.Close();
            return ExitStatus.CannotWrite;
        }

        SizeParser.TryParse(options.HostMemory, out ulong hostMemory, out _);
        bool joined = false;
        var outcome = new ServeOutcome();
        // One generic host, as before, that is also a web application: no default configuration sources, no
        // appsettings.json from the working directory; Kestrel and routing only.
        WebApplicationBuilder builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ContentRootPath = Environment.CurrentDirectory });
        builder.Configuration.AddConfiguration(configuration);
        // Logs go to stderr so stdout carries only the guests' output and the summary.
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(api.Configure);
        builder.Services.AddRoutingCore();
        builder.Services.AddProblemDetails();
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.AddOpenApi();
        builder.Services.Configure<JsonOptions>(o =>
        {
            o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull;
            // As in the configuration file, a misspelt key ("memroy") is refused rather than silently defaulted.
            o.SerializerOptions.UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow;
        });
        builder.Services.AddOptions<HybridVmmOptions>()
            .Bind(builder.Configuration.GetSection(HybridVmmOptions.Section), b => b.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<HybridVmmOptions>, HybridVmmOptionsValidator>();
        builder.Services.AddSingleton(outcome);
        var console = new ConsoleRecorder(new PrefixedLineConsole(Console.Out));
        builder.Services.AddSingleton(console);
        builder.Services.AddSingleton(_ => new HybridSystem(
            new HypervisorOptions { HostMemoryBytes = (long)hostMemory, Quantum = options.Quantum },
            console, trace));
        builder.Services.AddSingleton(services => new ControlBarrier(services.GetRequiredService<HybridSystem>().Kernel.Scheduler));
        builder.Services.AddSingleton(migration);
        builder.Services.AddSingleton<VmManager>();
        builder.Services.AddHostedService<MigrationListener>();
        builder.Services.AddSingleton<IServeVmListener>(services => services.GetRequiredService<VmManager>());
        builder.Services.AddHostedService<HypervisorService>();
        builder.Services.AddHostedService<RootPartitionService>();
        if (cluster is not null)
        {
            // The host also joins the cluster as an Orleans silo (docs/cluster.md); the cluster acts through VmManager.
            builder.Services.AddSingleton<IHostAgent, ServeHostAgent>();
            builder.AddClusterHost(cluster);
            // Orleans logs warnings and errors once the host has joined; a silo that cannot start (Redis unreachable,
            // a port taken) is reported once, by the catch below, without the stack traces its loggers would add.
            builder.Logging.AddFilter((_, category, level) => category is null || !IsClusterCategory(category)
                ? level >= LogLevel.Information
                : joined && level >= LogLevel.Warning && category != "Orleans.Runtime.Silo");
        }

        if (metrics)
        {
            // The same meter dotnet-counters reads, scraped by Prometheus through OpenTelemetry (docs/serve.md#metrics).
            builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(HybridVmm.HostOS.Telemetry.HybridVmmMetrics.MeterName).AddPrometheusExporter());
        }

        await using WebApplication app = builder.Build();
        ManagementApi.Map(app, api);
        if (metrics)
        {
            app.MapPrometheusScrapingEndpoint("/metrics");
        }
        ILogger logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("HybridVmm.Api");
        app.Lifetime.ApplicationStarted.Register(() => logger.LogInformation("Management API listening on {Address}",
            api.SocketPath is { } path ? $"unix:{path}" : app.Urls.FirstOrDefault() ?? api.Tcp!.ToString()));
        if (cluster is not null)
        {
            app.Lifetime.ApplicationStarted.Register(() => joined = true);
            app.Lifetime.ApplicationStarted.Register(() => logger.LogInformation(
                "Cluster host {Name} joined: silo {Address}:{SiloPort}, gateway {GatewayPort}, checkpoints in {Directory}",
                cluster.Name, cluster.Address, cluster.SiloPort, cluster.GatewayPort, cluster.CheckpointDirectory));
        }

        HybridSystem system = app.Services.GetRequiredService<HybridSystem>();
        try
        {
            await app.RunAsync(cancellationToken);
        }
        catch (Exception e) when (cluster is not null && ClusterFailure.IsJoinFailure(e))
        {
            stderr.WriteLine($"hybridvmm: error: cannot join the cluster at '{cluster.Redis}': {ClusterFailure.Describe(e)}");
            return ExitStatus.Unavailable;
        }
        finally
        {
            api.Close();
        }

        system.Dispose();
        return outcome.ExitStatus;
    }

    /// <summary>The loggers of Orleans and of the host's start-up, which report a cluster that cannot be joined.</summary>
    private static bool IsClusterCategory(string category) =>
        category.StartsWith("Orleans", StringComparison.Ordinal) || category == "Microsoft.Extensions.Hosting.Internal.Host";

    /// <summary>Keys the options do not have, each named with its VM, before the binder would report only the first.</summary>
    private static List<string> UnknownKeys(IConfigurationSection section)
    {
        var problems = new List<string>();
        Check(section, typeof(HybridVmmOptions), HybridVmmOptions.Section, null);
        int index = 0;
        foreach (IConfigurationSection vm in section.GetSection(nameof(HybridVmmOptions.Vms)).GetChildren())
        {
            Check(vm, typeof(VmOptions), $"Vms:{vm.Key}", vm[nameof(VmOptions.Name)] is { } name ? $"VM '{VmNames.Printable(name)}'" : $"VM {index}");
            index++;
        }

        return problems;

        void Check(IConfigurationSection at, Type type, string where, string? vm)
        {
            string[] known = type.GetProperties().Select(p => p.Name).ToArray();
            foreach (IConfigurationSection child in at.GetChildren())
            {
                if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
                {
                    problems.Add($"{where}{(vm is null ? "" : $" ({vm})")}: unknown key '{VmNames.Printable(child.Key)}' (known: {string.Join(", ", known)})");
                }
            }
        }
    }

    /// <summary>Reads each VM's image with its bound and checks that it loads; the status and message of the first that does not.</summary>
    private static async Task<int?> CheckImagesAsync(HybridVmmOptions options, string? configPath, TextWriter stderr, CancellationToken cancellationToken)
    {
        foreach (VmOptions vm in options.Vms)
        {
            SizeParser.TryParseGuestMemory(vm.Memory, out ulong memory, out _);
            int status = ExitStatus.NoInput;
            byte[]? image = ImageSource.IsEmbedded(vm.Image, out _)
                ? ImageSource.Read(vm.Image)
                : await GuestFile.ReadAsync(vm.Image, (long)memory, $"VM '{vm.Name}': image", (s, message) =>
                {
                    status = s;
                    stderr.WriteLine($"hybridvmm: error: {configPath}: {message}");
                }, cancellationToken);
            if (image is null)
            {
                return status;
            }

            var config = new VmConfiguration
            {
                Name = vm.Name, Image = image, MemoryBytes = memory, CommandLine = vm.CommandLine, Devices = vm.Devices,
                SyntheticDevices = vm.SyntheticDevices, DiskImage = vm.DiskImage, InstructionLimit = vm.MaxInstructions, Processors = vm.Cpus,
            };
            if (RootPartition.Prepare(config, out VmCreationError? error) is null)
            {
                stderr.WriteLine($"hybridvmm: error: {configPath}: VM '{vm.Name}': {error!.Message}");
                return ExitStatus.OfCreationError(error.Kind);
            }
        }

        return null;
    }
}
