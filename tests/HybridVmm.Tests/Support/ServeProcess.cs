using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace HybridVmm.Tests.Support;

/// <summary>
/// A real <c>hybridvmm serve</c> process in its own temporary directory, with its management API on a Unix socket
/// there (or on TCP), and HTTP clients that talk to it. Disposing stops it (SIGTERM, then kill) and removes the directory.
/// </summary>
public sealed class ServeProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly MemoryStream _stdout = new();
    private readonly Task _stdoutCopy;
    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ServeProcess(string directory, IReadOnlyList<string> args)
    {
        Directory = directory;
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hybridvmm.dll"));
        start.ArgumentList.Add("serve");
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        _process = Process.Start(start)!;
        _process.StandardInput.Close();
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                _listening.TrySetException(new InvalidOperationException($"serve ended before its API listened; stderr:\n{Stderr}"));
                return;
            }

            lock (_stderr)
            {
                _stderr.AppendLine(e.Data);
            }

            const string marker = "Management API listening on ";
            int at = e.Data.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0)
            {
                _listening.TrySetResult(e.Data[(at + marker.Length)..].Trim());
            }
        };
        _process.BeginErrorReadLine();
        _stdoutCopy = _process.StandardOutput.BaseStream.CopyToAsync(_stdout);
    }

    public string Directory { get; }

    public int ProcessId => _process.Id;

    /// <summary>Whether serve has ended (by itself or killed).</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Ends serve with SIGKILL, as a host that crashes: nothing of it runs any more, nothing is cleaned up.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
    }

    public string SocketPath => Path.Combine(Directory, "api.sock");

    /// <summary>Where the API said it listens: unix:PATH or http://HOST:PORT.</summary>
    public string Address { get; private set; } = "";

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Starts serve with its API on api.sock in a new directory (plus <paramref name="args"/>) and waits until the API listens.</summary>
    public static ServeProcess Start(params string[] args) => StartIn(NewDirectory(), ["--api-socket", "api.sock", .. args]);

    /// <summary>Starts serve with exactly <paramref name="args"/> in <paramref name="directory"/> and waits until the API listens.</summary>
    public static ServeProcess StartIn(string directory, IReadOnlyList<string> args)
    {
        var serve = new ServeProcess(directory, args);
        if (!serve._listening.Task.Wait(TimeSpan.FromMinutes(1)))
        {
            serve.Dispose();
            Assert.Fail($"serve's API did not listen within a minute; stderr:\n{serve.Stderr}");
        }

        serve.Address = serve._listening.Task.Result;
        return serve;
    }

    public static string NewDirectory()
    {
        string directory = Path.Combine(Path.GetTempPath(), $"hybridvmm-api-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(directory);
        return directory;
    }

    /// <summary>An HTTP client over the Unix socket.</summary>
    public HttpClient UnixClient()
    {
        string path = SocketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://localhost"), Timeout = TimeSpan.FromMinutes(1) };
    }

    /// <summary>Stops serve with SIGTERM and returns its exit status and stdout.</summary>
    public (int ExitCode, string Stdout) Stop()
    {
        Process.Start("kill", $"-TERM {_process.Id}")!.WaitForExit();
        Assert.That(_process.WaitForExit(TimeSpan.FromMinutes(1)), Is.True, "serve did not stop on SIGTERM");
        _process.WaitForExit();
        _stdoutCopy.Wait(TimeSpan.FromSeconds(10));
        return (_process.ExitCode, Encoding.UTF8.GetString(_stdout.ToArray()));
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>One API answer as a test reads it: the status, the media type and the JSON body.</summary>
public sealed record ApiReply(int Status, string? MediaType, JsonElement Body)
{
    public string State => Body.GetProperty("state").GetString()!;

    public string Detail => Body.TryGetProperty("detail", out JsonElement detail) ? detail.GetString()! : "";

    public override string ToString() => $"{Status} {MediaType} {Body}";

    public static async Task<ApiReply> SendAsync(HttpClient client, HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType());
        }

        using HttpResponseMessage response = await client.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        JsonElement json = text.Length > 0 && response.Content.Headers.ContentType?.MediaType?.Contains("json") == true
            ? JsonDocument.Parse(text).RootElement.Clone()
            : JsonDocument.Parse(JsonSerializer.Serialize(text)).RootElement.Clone();
        return new ApiReply((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType, json);
    }

    public static Task<ApiReply> Get(HttpClient client, string path) => SendAsync(client, HttpMethod.Get, path);

    public static Task<ApiReply> Post(HttpClient client, string path, object? body = null) => SendAsync(client, HttpMethod.Post, path, body);

    public static Task<ApiReply> Delete(HttpClient client, string path) => SendAsync(client, HttpMethod.Delete, path);
}
