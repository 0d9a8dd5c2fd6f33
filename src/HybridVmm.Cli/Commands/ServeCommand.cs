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
    /// <summary>A configuration file larger than this is refused before it is read (a thousand VMs take about 200 KiB).</summary>
    private const long MaxConfigurationBytes = 16 << 20;

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
        if (InputFile.Check(configPath, "configuration file", MaxConfigurationBytes, ExitStatus.Configuration) is { } refusal)
        {
            stderr.WriteLine($"hybridvmm: error: {refusal.Message}");
            return refusal.Status;
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
        if (await CheckImagesAsync(options, configPath, stderr, cancellationToken) is { } refused)
        {
            return refused;
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
    private static async Task<int?> CheckImagesAsync(HybridVmmOptions options, string configPath, TextWriter stderr, CancellationToken cancellationToken)
    {
        foreach (VmOptions vm in options.Vms)
        {
            SizeParser.TryParseGuestMemory(vm.Memory, out uint memory, out _);
            int status = ExitStatus.NoInput;
            byte[]? image = ImageSource.IsEmbedded(vm.Image, out _)
                ? ImageSource.Read(vm.Image)
                : await GuestFile.ReadAsync(vm.Image, memory, $"VM '{vm.Name}': image", (s, message) =>
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
                SyntheticDevices = vm.SyntheticDevices, DiskImage = vm.DiskImage, InstructionLimit = vm.MaxInstructions,
            };
            if (RootPartition.Prepare(config, out VmCreationError? error) is null)
            {
                stderr.WriteLine($"hybridvmm: error: {configPath}: VM '{vm.Name}': {error!.Message}");
                return error.Kind == VmCreationErrorKind.InvalidImage ? ExitStatus.InvalidImage : ExitStatus.Configuration;
            }
        }

        return null;
    }
}
