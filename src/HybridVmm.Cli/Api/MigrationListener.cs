using System.Net;
using System.Net.Sockets;
using HybridVmm.HostOS.Migration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace HybridVmm.Cli.Api;

/// <summary>
/// serve's live-migration settings: the token both directions prove (<see cref="MigrationHandshake"/>), and where this
/// host takes incoming migrations, if anywhere. One token per host, as a Hyper-V host has one live-migration
/// authentication setting for all its VMs.
/// </summary>
public sealed record ServeMigrationOptions
{
    /// <summary>The HMAC key of serve's <c>--migration-token-file</c>; null: migrate only to open targets, and take VMs from anyone when listening.</summary>
    public byte[]? Key { get; init; }

    /// <summary>Where to accept incoming migrations (<c>--migration-listen</c>); null: none.</summary>
    public IPEndPoint? Listen { get; init; }

    /// <summary>How long a connection has to complete the handshake before it is dropped.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a peer may send or answer nothing during a migration, in both directions.</summary>
    public TimeSpan PeerTimeout { get; init; } = MigrationOptions.DefaultPeerTimeout;

    /// <summary>
    /// The files this host lets an arriving VM's synthblk disk be (<c>--migration-disk</c>, full paths): shared storage,
    /// as a Hyper-V host reaches the VHDX of a VM it takes on an SMB share or a cluster volume. The stream only refers
    /// to its disk by identity (size and SHA-256); the one of these files that is that disk backs it here.
    /// </summary>
    public IReadOnlyList<string> Disks { get; init; } = [];
}

/// <summary>
/// <c>serve --migration-listen HOST:PORT</c>: takes live migrations from other hosts (a <c>run --migrate-to</c> or
/// another serve's API), one at a time, as <c>receive</c> does for one. A connection that does not complete the
/// handshake is dropped after <see cref="ServeMigrationOptions.HandshakeTimeout"/>; a source with the wrong token is
/// refused; a received VM joins this host's VMs and runs.
/// </summary>
public sealed class MigrationListener(ServeMigrationOptions options, VmManager vms, ILogger<MigrationListener> logger) : BackgroundService
{
    private readonly TaskCompletionSource<IPEndPoint?> _bound = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The address it listens on (port 0 resolved), once it does; null when serve has no listener or could not bind.</summary>
    public Task<IPEndPoint?> Bound => _bound.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.Listen is not { } endpoint)
        {
            _bound.TrySetResult(null);
            return;
        }

        using var listener = new TcpListener(endpoint);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            logger.LogError("Cannot listen for migrations on {Endpoint}: {Reason}", endpoint, e.Message);
            _bound.TrySetResult(null);
            return;
        }

        var bound = (IPEndPoint)listener.LocalEndpoint;
        vms.MigrationEndpoint = bound.ToString();
        _bound.TrySetResult(bound);
        logger.LogInformation("Migration listening on {Endpoint}{Open}", bound, options.Key is null ? " (open: no token)" : "");
        while (!stoppingToken.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            using (client)
            {
                await ServeOneAsync(client, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>One connection: the handshake, then one VM. Nothing here ends the listener but serve's stopping.</summary>
    private async Task ServeOneAsync(TcpClient client, CancellationToken stoppingToken)
    {
        string peer = client.Client.RemoteEndPoint?.ToString() ?? "?";
        await using NetworkStream stream = client.GetStream();
        try
        {
            HandshakeResult handshake = await MigrationHandshake.AcceptAsync(stream, options.Key, options.HandshakeTimeout, stoppingToken).ConfigureAwait(false);
            switch (handshake.Outcome)
            {
                case HandshakeOutcome.NotAPeer:
                    logger.LogWarning("Dropped a connection from {Peer} on the migration port: {Reason}", peer, handshake.Reason);
                    return;
                case HandshakeOutcome.Refused:
                    logger.LogWarning("Refused a migration from {Peer}: {Reason}", peer, handshake.Reason);
                    return;
            }

            (string? name, string? error) = await vms.ReceiveAsync(stream, peer, stoppingToken).ConfigureAwait(false);
            if (error is not null)
            {
                logger.LogWarning("A migration from {Peer} did not complete: {Reason}", peer, error);
                return;
            }

            logger.LogInformation("VM {Name} received from {Peer} and running here", name, peer);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or TimeoutException or InvalidDataException)
        {
            logger.LogWarning("A migration from {Peer} did not complete: {Reason}", peer, e.Message);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Whatever a peer sends, the listener (and serve) go on: a bug it reveals is logged, not thrown at the host.
            logger.LogError(e, "A migration from {Peer} failed unexpectedly", peer);
        }
    }
}
