using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using HybridVmm.Cli.Api;
using HybridVmm.Cli.Cluster;
using HybridVmm.Cli.Common;
using HybridVmm.Cluster;
using HybridVmm.HostOS.Migration;

namespace HybridVmm.Cli.Commands;

/// <summary>
/// <c>hybridvmm vm ...</c>: a client of a running serve's management API, as virsh is of libvirtd. Human tables by
/// default, the API's JSON with --json. Exit statuses: 69 no API to talk to, 76 the API refused, 77 no token.
/// </summary>
internal static class VmCommand
{
    private sealed record Connection(Option<string?> Socket, Option<string?> Connect, Option<string?> TokenFile, Option<bool> Json, Option<string?> Cluster);

    public static Command Create()
    {
        var connection = new Connection(
            new Option<string?>("--api-socket") { Description = $"serve's API socket (default: {ApiListener.DefaultSocketPath})", Recursive = true },
            new Option<string?>("--connect") { Description = "serve's API on TCP HOST:PORT (serve --listen); needs --token-file", Recursive = true },
            new Option<string?>("--token-file") { Description = "The bearer token for --connect", Recursive = true },
            new Option<bool>("--json") { Description = "Print the API's JSON instead of a table", Recursive = true },
            new Option<string?>("--cluster") { Description = "Drive the cluster's VMs instead (create, start, stop, migrate, show, list): its Redis host:port", Recursive = true });
        var command = new Command("vm", "Drive the VMs of a running 'hybridvmm serve' through its management API, or of a cluster with --cluster")
        {
            connection.Socket, connection.Connect, connection.TokenFile, connection.Json, connection.Cluster,
        };

        var list = new Command("list", "List the VMs: state, memory, instructions, exits (with --cluster: hosts and VMs)");
        list.SetAction((r, ct) => r.GetValue(connection.Cluster) is { } cluster
            ? ClusterCommands.StatusAsync(cluster, r.GetValue(connection.Json), ct)
            : RunAsync(r, connection, c => c.GetAsync("/api/vms", ct), VmTables.List));
        command.Subcommands.Add(list);

        var host = new Command("host", "The host: memory in use, virtual time, VMs by state");
        host.SetAction((r, ct) => RunAsync(r, connection, c => c.GetAsync("/api/host", ct), VmTables.Host));
        var partitions = new Command("partitions", "The hypervisor's partitions: the root's own and each guest's, with its VM and vCPUs");
        partitions.SetAction((r, ct) => RunAsync(r, connection, c => c.GetAsync("/api/partitions", ct), VmTables.Partitions));
        command.Subcommands.Add(host);
        command.Subcommands.Add(partitions);

        command.Subcommands.Add(Named("show", "A VM's state, vCPUs, memory, devices and statistics", connection,
            (c, name, ct) => c.GetAsync($"/api/vms/{name}", ct), VmTables.Show, cluster: ClusterCommands.ShowAsync));
        command.Subcommands.Add(Named("stats", "A VM's counters: instructions, exits by kind, channel messages", connection,
            (c, name, ct) => c.GetAsync($"/api/vms/{name}/stats", ct), VmTables.Statistics));
        foreach ((string verb, string description) in new[]
        {
            ("start", "Start a created VM"), ("pause", "Pause a running VM at an instruction boundary"),
            ("resume", "Resume a paused VM"), ("stop", "Stop a VM"), ("reset", "Boot a VM again from its image"),
        })
        {
            command.Subcommands.Add(Named(verb, description, connection, (c, name, ct) => c.PostAsync($"/api/vms/{name}/{verb}", null, ct), VmTables.State,
                cluster: verb switch { "start" => ClusterCommands.StartAsync, "stop" => ClusterCommands.StopAsync, _ => null }));
        }

        command.Subcommands.Add(Named("delete", "Stop and delete a VM", connection, (c, name, ct) => c.DeleteAsync($"/api/vms/{name}", ct),
            body => $"{body.Read<VmInfo>().Name}: deleted\n"));
        command.Subcommands.Add(ConsoleCommand(connection));
        command.Subcommands.Add(CreateCommand(connection));
        command.Subcommands.Add(SaveCommand(connection));
        command.Subcommands.Add(RestoreCommand(connection));
        command.Subcommands.Add(MigrateCommand(connection));
        return command;
    }

    private static Command Named(string verb, string description, Connection connection,
        Func<ApiClient, string, CancellationToken, Task<ApiResponse>> send, Func<ApiResponse, string> render, bool rawJson = true,
        Func<string, string, bool, CancellationToken, Task<int>>? cluster = null)
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        var command = new Command(verb, description) { name };
        command.SetAction((r, ct) => r.GetValue(connection.Cluster) is { } redis
            ? cluster is null ? NotInCluster(verb) : cluster(redis, r.GetValue(name)!, r.GetValue(connection.Json), ct)
            : RunAsync(r, connection, c => send(c, Uri.EscapeDataString(r.GetValue(name)!), ct), render, rawJson));
        return command;
    }

    private static Task<int> NotInCluster(string verb)
    {
        Console.Error.WriteLine($"hybridvmm: error: 'vm {verb}' does not take --cluster yet (the cluster has create, start, stop, migrate, show and list)");
        return Task.FromResult(ExitStatus.Usage);
    }

    private static Command ConsoleCommand(Connection connection)
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        var dump = new Option<bool>("--dump") { Description = "Print the VM's recent output (the last 64 KiB) and exit, without attaching" };
        var command = new Command("console", "Attach to the VM's COM1 (its recent output first); Ctrl-A x detaches") { name, dump };
        command.SetAction((r, ct) =>
        {
            string vm = r.GetValue(name)!;
            if (r.GetValue(dump))
            {
                return RunAsync(r, connection, c => c.GetAsync($"/api/vms/{Uri.EscapeDataString(vm)}/console", ct), body => body.Body, rawJson: false);
            }

            ApiClient? client = Connect(r, connection, Console.Error, out int refused);
            if (client is null)
            {
                return Task.FromResult(refused);
            }

            return WithClientAsync(client, c => VmConsoleSession.RunAsync(c, vm, ct));
        });
        return command;
    }

    private static async Task<int> WithClientAsync(ApiClient client, Func<ApiClient, Task<int>> run)
    {
        using (client)
        {
            try
            {
                return await run(client);
            }
            catch (Exception e) when (e is HttpRequestException or System.Net.Sockets.SocketException or IOException or System.Net.WebSockets.WebSocketException)
            {
                Console.Error.WriteLine($"hybridvmm: error: cannot reach the management API at {client.Where}: {Innermost(e)} (is 'hybridvmm serve' running there?)");
                return ExitStatus.Unavailable;
            }
        }
    }

    private static Command CreateCommand(Connection connection)
    {
        var name = new Argument<string>("NAME") { Description = "A new VM's name" };
        var image = new Option<string?>("--image") { Description = "A Multiboot ELF or bzImage, or embedded:NAME" };
        var snapshot = new Option<string?>("--snapshot") { Description = "A snapshot file instead of an image" };
        var memory = new Option<string?>("--memory", "-m") { Description = "Guest RAM (2M to 4096M, i.e. 4G; default 64M)" };
        var append = new Option<string?>("--append") { Description = "The guest's command line" };
        var devices = new Option<string[]?>("--devices") { Description = "Emulated devices (default: all)", AllowMultipleArgumentsPerToken = true };
        var synthetic = new Option<string[]?>("--synthetic") { Description = "Synthetic devices: synthcon, synthblk, synthnet", AllowMultipleArgumentsPerToken = true };
        var disk = new Option<string?>("--disk") { Description = "The disk image behind synthblk" };
        var maxInstructions = new Option<long?>("--max-instructions") { Description = "Stop the guest after N instructions" };
        var cpus = new Option<int?>("--cpus") { Description = "Virtual processors, 1 to 64 (default 1)" };
        var start = new Option<bool>("--start") { Description = "Start the VM at once" };
        var isProtected = new Option<bool>("--protected") { Description = "With --cluster: checkpoint the VM and restart it on another host if its host dies" };
        var checkpointEvery = new Option<long?>("--checkpoint-every") { Description = $"With --protected: checkpoint every N instructions (default {ClusterCreate.DefaultCheckpointEvery})" };
        var onHost = new Option<string?>("--host") { Description = "With --cluster: create the VM on this host (its --host-name) instead of where the placement policy would" };
        var command = new Command("create", "Create a VM from an image (or a snapshot) on the serve host, or in the cluster with --cluster")
        {
            name, image, snapshot, memory, append, devices, synthetic, disk, maxInstructions, cpus, start, isProtected, checkpointEvery, onHost,
        };
        command.SetAction((r, ct) => r.GetValue(connection.Cluster) is { } redis
            ? ClusterCreate.RunAsync(redis, r, new ClusterCreate.Options(name, image, snapshot, memory, append, maxInstructions, cpus, start, isProtected, checkpointEvery),
                [devices, synthetic, disk], r.GetValue(onHost), r.GetValue(connection.Json), ct)
            : r.GetValue(isProtected) || r.GetValue(checkpointEvery) is not null || r.GetValue(onHost) is not null
            ? Refuse("--protected, --checkpoint-every and --host go with --cluster")
            : RunAsync(r, connection, c => c.PostAsync("/api/vms", new CreateVmRequest
        {
            Name = r.GetValue(name),
            Image = r.GetValue(image) is { } i ? HostPath(i) : null,
            Snapshot = r.GetValue(snapshot) is { } s ? HostPath(s) : null,
            Memory = r.GetValue(memory),
            CommandLine = r.GetValue(append),
            Devices = r.GetValue(devices) is { Length: > 0 } d ? d.SelectMany(SplitList).ToList() : null,
            SyntheticDevices = r.GetValue(synthetic) is { Length: > 0 } y ? y.SelectMany(SplitList).ToList() : null,
            DiskImage = r.GetValue(disk) is { } file ? HostPath(file) : null,
            MaxInstructions = r.GetValue(maxInstructions),
            Cpus = r.GetValue(cpus),
            Start = r.GetValue(start),
        }, ct), VmTables.State));
        return command;
    }

    private static Task<int> Refuse(string message)
    {
        Console.Error.WriteLine($"hybridvmm: error: {message}");
        return Task.FromResult(ExitStatus.Usage);
    }

    private static Command SaveCommand(Connection connection)
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        var file = new Argument<string>("FILE") { Description = "The snapshot file to write (on the serve host)" };
        var command = new Command("save", "Checkpoint a VM to a snapshot file; a running VM runs on") { name, file };
        command.SetAction((r, ct) => RunAsync(r, connection,
            c => c.PostUntilDoneAsync($"/api/vms/{Uri.EscapeDataString(r.GetValue(name)!)}/save", new SaveVmRequest { Path = HostPath(r.GetValue(file)!) }, ct),
            VmTables.Saved));
        return command;
    }

    private static Command MigrateCommand(Connection connection)
    {
        var name = new Argument<string>("NAME") { Description = "The VM's name" };
        var to = new Option<string?>("--to")
        {
            Description = "HOST:PORT of the target's migration listener (its serve --migration-listen); with --cluster, the target host's name (default: the placement policy's choice)",
        };
        var command = new Command("migrate", "Live-migrate a running VM to another host; on success it runs there and leaves this one") { name, to };
        command.SetAction((r, ct) => r.GetValue(connection.Cluster) is { } redis
            ? ClusterCommands.MigrateAsync(redis, r.GetValue(name)!, r.GetValue(to), r.GetValue(connection.Json), ct)
            : r.GetValue(to) is not { } target
            ? Refuse("vm migrate needs --to HOST:PORT, the target's migration listener (or --cluster REDIS)")
            : RunAsync(r, connection, c => MigrateWithProgressAsync(c, r.GetValue(name)!, target, ct), VmTables.Migrated));
        return command;
    }

    /// <summary>
    /// Sends the migration and waits for its answer; meanwhile, when stderr is a terminal, it draws where the migration
    /// has got to from the VM's read (its <c>migration</c>), as <c>virsh migrate --verbose</c> does.
    /// </summary>
    private static async Task<ApiResponse> MigrateWithProgressAsync(ApiClient client, string name, string target, CancellationToken ct)
    {
        string path = $"/api/vms/{Uri.EscapeDataString(name)}";
        Task<ApiResponse> migrating = client.PostUntilDoneAsync(path + "/migrate", new MigrateVmRequest { To = target }, ct);
        using Terminal.StatusLine? line = Terminal.StatusLine.ForMigration(Console.Error, $"{name}: migrating to {target}", besideGuestOutput: false);
        while (line is not null && await Task.WhenAny(migrating, Task.Delay(250, ct)) != migrating)
        {
            try
            {
                ApiResponse read = await client.GetAsync(path, ct);
                if (read.Problem is null && read.Read<VmInfo>().Migration is { Pages: > 0 } m)
                {
                    line.Show(new MigrationProgress(m.Phase == "final" ? MigrationPhase.Final : MigrationPhase.PreCopy, m.Round, m.Pages, m.Bytes), receiving: false);
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException or System.Text.Json.JsonException)
            {
                // the status is not worth an error; the migration's own answer says how it ended
            }
        }

        return await migrating;
    }

    private static Command RestoreCommand(Connection connection)
    {
        var name = new Argument<string>("NAME") { Description = "The new VM's name" };
        var file = new Argument<string>("FILE") { Description = "A snapshot file (vm save, run --save-to)" };
        var start = new Option<bool>("--start") { Description = "Start the VM at once" };
        var disk = new Option<string?>("--disk") { Description = "The file behind the saved VM's synthblk disk, on the serve host: the disk it was saved with" };
        var command = new Command("restore", "Create a VM from a snapshot file, ready to continue where it was saved") { name, file, start, disk };
        command.SetAction((r, ct) => RunAsync(r, connection, c => c.PostUntilDoneAsync("/api/vms", new CreateVmRequest
        {
            Name = r.GetValue(name),
            Snapshot = HostPath(r.GetValue(file)!),
            DiskImage = r.GetValue(disk) is { } diskImage ? HostPath(diskImage) : null,
            Start = r.GetValue(start),
        }, ct), VmTables.State));
        return command;
    }

    /// <summary>serve runs in its own working directory: a relative path is made absolute here (embedded:NAME stays).</summary>
    private static string HostPath(string path) => path.StartsWith("embedded:", StringComparison.Ordinal) ? path : Path.GetFullPath(path);

    private static IEnumerable<string> SplitList(string value) => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static async Task<int> RunAsync(ParseResult result, Connection connection, Func<ApiClient, Task<ApiResponse>> send,
        Func<ApiResponse, string> render, bool rawJson = true)
    {
        TextWriter stderr = Console.Error;
        ApiClient? client = Connect(result, connection, stderr, out int refused);
        if (client is null)
        {
            return refused;
        }

        using (client)
        {
            ApiResponse response;
            try
            {
                response = await send(client);
            }
            catch (Exception e) when (e is HttpRequestException or SocketException or IOException)
            {
                stderr.WriteLine($"hybridvmm: error: cannot reach the management API at {client.Where}: {Innermost(e)} (is 'hybridvmm serve' running there?)");
                return ExitStatus.Unavailable;
            }
            catch (TaskCanceledException)
            {
                stderr.WriteLine($"hybridvmm: error: the management API at {client.Where} did not answer");
                return ExitStatus.Unavailable;
            }

            if (response.Problem is { } problem)
            {
                stderr.WriteLine($"hybridvmm: error: {problem.Detail} ({problem.Status} {problem.Title})");
                return problem.Status switch
                {
                    401 or 403 => ExitStatus.PermissionDenied,
                    502 or 503 => ExitStatus.Unavailable,
                    >= 500 => ExitStatus.InternalError,
                    _ => ExitStatus.ApiRefused,
                };
            }

            Console.Out.Write(result.GetValue(connection.Json) && rawJson ? response.Body + "\n" : render(response));
            return ExitStatus.Success;
        }
    }

    private static ApiClient? Connect(ParseResult result, Connection connection, TextWriter stderr, out int status)
    {
        status = ExitStatus.Usage;
        string? socket = result.GetValue(connection.Socket);
        string? connect = result.GetValue(connection.Connect);
        string? tokenFile = result.GetValue(connection.TokenFile);
        if (connect is null)
        {
            if (tokenFile is not null)
            {
                stderr.WriteLine("hybridvmm: error: --token-file goes with --connect HOST:PORT");
                return null;
            }

            string path = socket ?? ApiListener.DefaultSocketPath;
            if (!File.Exists(path))
            {
                stderr.WriteLine($"hybridvmm: error: no management API socket at '{path}' (is 'hybridvmm serve' running? see --api-socket)");
                status = ExitStatus.Unavailable;
                return null;
            }

            return ApiClient.ForSocket(path);
        }

        if (socket is not null)
        {
            stderr.WriteLine("hybridvmm: error: give either --api-socket or --connect, not both");
            return null;
        }

        if (!Endpoints.TryParse(connect, out IPEndPoint? endpoint))
        {
            stderr.WriteLine($"hybridvmm: error: --connect '{connect}' is not HOST:PORT");
            return null;
        }

        if (tokenFile is null)
        {
            stderr.WriteLine("hybridvmm: error: --connect needs --token-file FILE with serve's token");
            return null;
        }

        // The token file serve reads, by the same rules: a device such as /dev/zero is refused, never read without end.
        return TokenFile.TryRead(tokenFile, stderr, out status) is { } token ? ApiClient.ForTcp(endpoint!, token) : null;
    }

    private static string Innermost(Exception e)
    {
        while (e.InnerException is not null)
        {
            e = e.InnerException;
        }

        return e.Message;
    }
}
