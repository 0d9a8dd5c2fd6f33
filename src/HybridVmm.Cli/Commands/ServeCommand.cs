using HybridVmm.Cli.Common;
using System.CommandLine;
using HybridVmm.Cli.Hosting;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Tracing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm serve --config FILE</c>: the kernel and the root partition as generic-host services.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config", "-c") { Description = "appsettings-style JSON with a HybridVmm section", Required = true };
        var command = new Command("serve", "Run the hypervisor and the root partition as hosted services for the VMs in a config file") { config };
        command.SetAction((result, cancellationToken) => ServeAsync(result.GetValue(config)!, cancellationToken));
        return command;
    }

    private static async Task<int> ServeAsync(string configPath, CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (!File.Exists(configPath))
        {
            stderr.WriteLine($"hybridvmm: error: configuration file '{configPath}' does not exist");
            return ExitStatus.NoInput;
        }

        HybridVmmOptions options;
        IConfigurationRoot configuration;
        try
        {
            configuration = new ConfigurationBuilder().AddJsonFile(Path.GetFullPath(configPath), optional: false).Build();
            IConfigurationSection section = configuration.GetSection(HybridVmmOptions.Section);
            if (!section.Exists())
            {
                stderr.WriteLine($"hybridvmm: error: {configPath} has no \"{HybridVmmOptions.Section}\" section");
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

        TraceRecorder? trace = TraceFiles.Open(options.Trace, stderr);
        if (trace is null)
        {
            return ExitStatus.CannotWrite;
        }

        SizeParser.TryParse(options.HostMemory, out ulong hostMemory, out _);
        var outcome = new ServeOutcome();
        HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            DisableDefaults = true,
            Configuration = new ConfigurationManager(),
        });
        builder.Configuration.AddConfiguration(configuration);
        // Logs go to stderr so stdout carries only the guests' output and the summary.
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Services.AddOptions<HybridVmmOptions>()
            .Bind(builder.Configuration.GetSection(HybridVmmOptions.Section), b => b.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<HybridVmmOptions>, HybridVmmOptionsValidator>();
        builder.Services.AddSingleton(outcome);
        builder.Services.AddSingleton(_ => new HybridSystem(
            new HypervisorOptions { HostMemoryBytes = (long)hostMemory, Quantum = options.Quantum },
            new PrefixedLineConsole(Console.Out), trace));
        builder.Services.AddHostedService<HypervisorService>();
        builder.Services.AddHostedService<RootPartitionService>();

        using IHost host = builder.Build();
        HybridSystem system = host.Services.GetRequiredService<HybridSystem>();
        await host.RunAsync(cancellationToken);
        system.Dispose();
        return outcome.ExitStatus;
    }
}
