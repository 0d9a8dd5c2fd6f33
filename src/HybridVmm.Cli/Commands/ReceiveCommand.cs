using HybridVmm.Cli.Tracing;
using HybridVmm.Cli.Common;
using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Migration;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Cli.Commands;

/// <summary><c>hybridvmm receive --listen HOST:PORT</c>: the target of a live migration; runs the VM it receives.</summary>
internal static class ReceiveCommand
{
    public static Command Create()
    {
        var listen = new Option<string>("--listen") { Description = "Address to accept one migration on (port 0 picks a free port)", DefaultValueFactory = _ => "127.0.0.1:0" };
        var trace = new Option<string?>("--trace") { Description = "Write the readable trace to this file" };
        var memory = new Option<string>("--host-memory") { Description = "Host memory of this hypervisor", DefaultValueFactory = _ => "512M" };
        var disk = new Option<string?>("--disk") { Description = "This host's file behind the migrated VM's synthblk disk (shared storage): it must be the disk the source ran on" };
        var tokenFile = new Option<string?>("--token-file") { Description = "The migration token the source must prove it holds (its run --token-file)" };
        var insecure = new Option<bool>("--insecure") { Description = "Take a VM from anyone who can connect, without a token" };
        var handshake = new Option<double>("--handshake-timeout")
        {
            Description = "Seconds a connection has to complete the migration handshake before it is dropped and the next one taken",
            DefaultValueFactory = _ => DefaultHandshakeSeconds,
        };
        var peer = new Option<double>("--peer-timeout")
        {
            Description = "Seconds the source may send nothing after the handshake (between frames or within one) before the migration is given up",
            DefaultValueFactory = _ => MigrationOptions.DefaultPeerTimeout.TotalSeconds,
        };
        var command = new Command("receive", "Wait for one live migration, then run the migrated guest here") { listen, trace, memory, disk, tokenFile, insecure, handshake, peer };
        command.SetAction((result, cancellationToken) => ReceiveAsync(result.GetValue(listen)!, result.GetValue(trace), result.GetValue(memory)!, result.GetValue(disk),
            result.GetValue(tokenFile), result.GetValue(insecure), new Deadlines(result.GetValue(handshake), result.GetValue(peer)), cancellationToken));
        return command;
    }

    private const double DefaultHandshakeSeconds = 10;

    /// <summary>How long a connection has for the handshake, and the source for each step after it, in seconds.</summary>
    private sealed record Deadlines(double HandshakeSeconds, double PeerSeconds);

    private static async Task<int> ReceiveAsync(string listen, string? tracePath, string memoryText, string? disk, string? tokenFile, bool insecure, Deadlines deadlines,
        CancellationToken cancellationToken)
    {
        TextWriter stderr = Console.Error;
        if (!Endpoints.TryParse(listen, out IPEndPoint? endpoint))
        {
            stderr.WriteLine($"hybridvmm: error: --listen '{listen}' is not HOST:PORT");
            return ExitStatus.Usage;
        }

        if (!SizeParser.TryParse(memoryText, out ulong hostMemory, out string sizeError))
        {
            stderr.WriteLine($"hybridvmm: error: {sizeError}");
            return ExitStatus.Usage;
        }

        if (hostMemory < 4096 || hostMemory > (ulong)Hardware.Memory.HostPhysicalMemory.MaxBytes)
        {
            stderr.WriteLine($"hybridvmm: error: --host-memory {memoryText} is out of range: give 4K to {Hardware.Memory.HostPhysicalMemory.MaxBytes >> 20}M");
            return ExitStatus.Usage;
        }

        foreach ((string option, double seconds) in new[] { ("--handshake-timeout", deadlines.HandshakeSeconds), ("--peer-timeout", deadlines.PeerSeconds) })
        {
            if (!(seconds is > 0 and <= 86_400))
            {
                stderr.WriteLine($"hybridvmm: error: {option} must be a number of seconds above 0 and at most 86400, not {seconds}");
                return ExitStatus.Usage;
            }
        }

        if ((tokenFile is null) != insecure)
        {
            stderr.WriteLine(insecure
                ? "hybridvmm: error: give --token-file or --insecure, not both"
                : "hybridvmm: error: receive needs --token-file FILE, the migration token its source also gives, or --insecure to take a VM from anyone who can connect");
            return ExitStatus.Usage;
        }

        byte[]? key = null;
        if (tokenFile is not null)
        {
            if (TokenFile.TryRead(tokenFile, stderr, out int unreadable) is not { } token)
            {
                return unreadable;
            }

            key = MigrationHandshake.Key(token);
        }

        if (disk is not null)
        {
            if (InputFile.RefuseDiskImage(disk, stderr) is { } diskRefused)
            {
                return diskRefused;
            }

            disk = Path.GetFullPath(disk);
        }

        TraceRecorder? recorder = TraceFiles.Open(tracePath, stderr);
        if (recorder is null)
        {
            return ExitStatus.CannotWrite;
        }

        using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var signals = new TerminationSignals(run);
        try
        {
            return await ReceiveAsync(endpoint!, listen, recorder, hostMemory, disk, key, deadlines, stderr, run.Token);
        }
        catch (OperationCanceledException) when (run.IsCancellationRequested)
        {
            recorder.Dispose();
            return TerminationSignals.ReportInterrupted(stderr);
        }
    }

    private static async Task<int> ReceiveAsync(IPEndPoint endpoint, string listen, TraceRecorder recorder, ulong hostMemory, string? disk, byte[]? key, Deadlines deadlines,
        TextWriter stderr, CancellationToken cancellationToken)
    {
        var listener = new TcpListener(endpoint);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            stderr.WriteLine($"hybridvmm: error: cannot listen on {listen}: {e.Message}");
            return ExitStatus.CannotWrite;
        }

        stderr.WriteLine($"hybridvmm: listening on {listener.LocalEndpoint}");
        stderr.Flush();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = (long)hostMemory }, HostOutput.StandardOutputConsole(), recorder);
        VirtualMachine? vm;
        string? error;
        while (true)
        {
            // One connection at a time: one that is silent, closes or speaks something else is dropped after at most
            // the handshake timeout, and the next is taken (issue 14, defect 7).
            TcpClient client = await listener.AcceptTcpClientAsync(cancellationToken);
            System.Net.EndPoint? peer = client.Client.RemoteEndPoint;
            NetworkStream stream = client.GetStream();
            HandshakeResult handshake = await MigrationHandshake.AcceptAsync(stream, key, TimeSpan.FromSeconds(deadlines.HandshakeSeconds), cancellationToken);
            if (handshake.Outcome == HandshakeOutcome.NotAPeer)
            {
                client.Dispose();
                stderr.WriteLine($"hybridvmm: dropped a connection from {peer}: {handshake.Reason}; still listening");
                continue;
            }

            listener.Stop();
            using (client)
            await using (stream)
            {
                if (handshake.Outcome == HandshakeOutcome.Refused)
                {
                    stderr.WriteLine($"hybridvmm: error: migration refused: {handshake.Reason}");
                    return ExitStatus.PermissionDenied;
                }

                using Terminal.StatusLine? line = Terminal.StatusLine.ForMigration(stderr, $"receiving from {peer}", besideGuestOutput: false);
                (vm, error) = await LiveMigration.ReceiveAsync(system, stream, cancellationToken, disk, TimeSpan.FromSeconds(deadlines.PeerSeconds),
                    p => line?.Show(p, receiving: true));
            }

            break;
        }

        if (vm is null)
        {
            stderr.WriteLine($"hybridvmm: error: migration did not complete: {error}");
            return ExitStatus.InvalidImage;
        }

        stderr.WriteLine($"hybridvmm: received '{vm.Name}' at instruction {vm.Statistics.InstructionsRetired}; resuming it here");
        system.Root.Start(vm);
        using (Terminal.StatusLine.Start(system, stderr, vm.Name, besideGuestOutput: true))
        {
            await system.RunUntilIdleAsync(cancellationToken);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return TerminationSignals.ReportInterrupted(stderr);
        }

        PartitionExit exit = await vm.Exited;
        return Outcome.Report(vm, exit, stderr);
    }
}
