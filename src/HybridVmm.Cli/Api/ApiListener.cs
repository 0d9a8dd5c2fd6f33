using System.Net;
using System.Net.Sockets;
using HybridVmm.Cli.Common;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace HybridVmm.Cli.Api;

/// <summary>
/// Where serve's management API listens: a Unix domain socket owned by the user with mode 0600 (the default, as
/// Firecracker's API socket), or a TCP endpoint that answers only requests carrying the bearer token from a file.
/// </summary>
public sealed class ApiListener
{
    private Socket? _unixSocket;

    private ApiListener(string? socketPath, IPEndPoint? tcp, string? token)
    {
        SocketPath = socketPath;
        Tcp = tcp;
        Token = token;
    }

    public string? SocketPath { get; }

    public IPEndPoint? Tcp { get; }

    /// <summary>The bearer token a TCP listener requires; null on the Unix socket, where the file mode guards access.</summary>
    public string? Token { get; }

    /// <summary>
    /// $HYBRIDVMM_API_SOCKET, else hybridvmm.sock in $XDG_RUNTIME_DIR (the user's private runtime directory), else
    /// hybridvmm-USER.sock in the temporary directory. serve and the vm commands agree on it.
    /// </summary>
    public static string DefaultSocketPath
    {
        get
        {
            if (Environment.GetEnvironmentVariable("HYBRIDVMM_API_SOCKET") is { Length: > 0 } configured)
            {
                return configured;
            }

            string? runtime = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
            return runtime is { Length: > 0 } && Directory.Exists(runtime)
                ? Path.Combine(runtime, "hybridvmm.sock")
                : Path.Combine(Path.GetTempPath(), $"hybridvmm-{Environment.UserName}.sock");
        }
    }

    /// <summary>The longest Unix socket path (sockaddr_un's sun_path less its terminating zero).</summary>
    public const int MaxSocketPathBytes = 107;

    /// <summary>Checks serve's API options and opens the listener; on refusal writes one message and returns the status.</summary>
    /// <param name="listen">--listen, parsed; null for the Unix socket.</param>
    public static ApiListener? TryOpen(string? socketPath, IPEndPoint? listen, string? tokenFile, TextWriter stderr, out int status)
    {
        status = ExitStatus.Success;
        if (listen is { } endpoint)
        {
            if (socketPath is not null)
            {
                return Refuse(stderr, out status, ExitStatus.Usage, "give either --api-socket or --listen, not both");
            }

            if (tokenFile is null)
            {
                return Refuse(stderr, out status, ExitStatus.Usage, "--listen needs --token-file FILE: a TCP listener answers only requests with that bearer token");
            }

            return TokenFile.TryRead(tokenFile, stderr, out status) is { } token ? new ApiListener(null, endpoint, token) : null;
        }

        if (tokenFile is not null)
        {
            return Refuse(stderr, out status, ExitStatus.Usage, "--token-file is for --listen; the Unix socket is guarded by its file mode (0600)");
        }

        string path = Path.GetFullPath(socketPath ?? DefaultSocketPath);
        if (System.Text.Encoding.UTF8.GetByteCount(path) > MaxSocketPathBytes)
        {
            return Refuse(stderr, out status, ExitStatus.Usage, $"the API socket path '{path}' is longer than {MaxSocketPathBytes} bytes, the limit of a Unix socket");
        }

        var listener = new ApiListener(path, null, null);
        return listener.BindUnixSocket(stderr, out status) ? listener : null;
    }

    /// <summary>
    /// Binds the socket file, makes it 0600, and only then listens: no other user can connect in between, whatever
    /// the umask. A socket file left by a serve that died is replaced; one a live serve answers on is refused.
    /// </summary>
    private bool BindUnixSocket(TextWriter stderr, out int status)
    {
        string path = SocketPath!;
        var endpoint = new UnixDomainSocketEndPoint(path);
        if (File.Exists(path))
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                probe.Connect(endpoint);
                Refuse(stderr, out status, ExitStatus.CannotWrite, $"another hybridvmm serve is listening on '{path}'; stop it, or give --api-socket PATH");
                return false;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused && new FileInfo(path).Length == 0)
            {
                File.Delete(path); // a socket nobody listens on any more
            }
            catch (SocketException e)
            {
                Refuse(stderr, out status, ExitStatus.CannotWrite, $"'{path}' exists and is not a socket of a stopped serve ({e.Message}); remove it or give --api-socket PATH");
                return false;
            }
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(endpoint);
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            socket.Listen(128);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            Refuse(stderr, out status, ExitStatus.CannotWrite, $"cannot create the API socket '{path}': {e.Message}");
            return false;
        }

        _unixSocket = socket;
        status = ExitStatus.Success;
        return true;
    }

    /// <summary>Gives Kestrel the endpoint, with the request limits of the API.</summary>
    public void Configure(KestrelServerOptions kestrel)
    {
        kestrel.AddServerHeader = false;
        kestrel.Limits.MaxRequestBodySize = ManagementApi.MaxRequestBodyBytes;
        kestrel.Limits.MaxConcurrentConnections = 64;
        kestrel.Limits.MaxConcurrentUpgradedConnections = 64;
        kestrel.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
        if (Tcp is { } tcp)
        {
            kestrel.Listen(tcp);
        }
        else
        {
            // Kestrel takes over the listening socket (and will close it); ours forgets the descriptor.
            ulong handle = (ulong)_unixSocket!.SafeHandle.DangerousGetHandle();
            _unixSocket.SafeHandle.SetHandleAsInvalid();
            kestrel.ListenHandle(handle);
        }
    }

    /// <summary>Removes the socket file when serve stops.</summary>
    public void Close()
    {
        if (SocketPath is { } path)
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
    }

    private static ApiListener? Refuse(TextWriter stderr, out int status, int exitStatus, string message)
    {
        stderr.WriteLine($"hybridvmm: error: {message}");
        status = exitStatus;
        return null;
    }
}
