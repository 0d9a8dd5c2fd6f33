using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;

namespace HybridVmm.Cli.Api;

/// <summary>One answer of the management API: the status, the body, and the problem when it refused.</summary>
public sealed record ApiResponse(int Status, string Body, ApiProblem? Problem)
{
    public T Read<T>() => JsonSerializer.Deserialize<T>(Body, ApiClient.Json)!;
}

/// <summary>
/// A client of serve's management API over its Unix socket (HttpClient through
/// <see cref="SocketsHttpHandler.ConnectCallback"/>) or over TCP with the bearer token.
/// </summary>
public sealed class ApiClient : IDisposable
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly HttpClient _http;
    private readonly SocketsHttpHandler? _unixHandler;
    private readonly string? _token;

    private readonly TimeSpan _requestTimeout;

    private ApiClient(HttpClient http, string where, SocketsHttpHandler? unixHandler = null, string? token = null, TimeSpan? requestTimeout = null)
    {
        _requestTimeout = requestTimeout ?? RequestTimeout;
        _http = http;
        Where = where;
        _unixHandler = unixHandler;
        _token = token;
    }

    /// <summary>
    /// How long an ordinary request may take before the client gives up (HttpClient's default). A request that waits
    /// for work whose length grows with the guest (a save, a migration, a restore) has no client deadline: serve bounds
    /// those itself (the migration's peer timeout, the disk), and giving up early would only hide how they ended.
    /// </summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(100);

    /// <summary>Where the client connects, for messages: unix:PATH or http://HOST:PORT.</summary>
    public string Where { get; }

    public static ApiClient ForSocket(string path)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new ApiClient(new HttpClient(handler, disposeHandler: false) { BaseAddress = new Uri("http://localhost"), Timeout = Timeout.InfiniteTimeSpan },
            $"unix:{path}", handler);
    }

    /// <param name="requestTimeout">Instead of <see cref="RequestTimeout"/> (for tests).</param>
    public static ApiClient ForTcp(IPEndPoint endpoint, string token, TimeSpan? requestTimeout = null)
    {
        var http = new HttpClient { BaseAddress = new Uri($"http://{endpoint}"), Timeout = Timeout.InfiniteTimeSpan };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return new ApiClient(http, $"http://{endpoint}", token: token, requestTimeout: requestTimeout);
    }

    /// <summary>Opens a WebSocket on <paramref name="path"/> (the console): the socket, or null and the HTTP status the API refused it with.</summary>
    public async Task<(ClientWebSocket? Socket, int RefusedStatus)> ConnectWebSocketAsync(string path, CancellationToken cancellationToken)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.KeepAliveInterval = TimeSpan.FromSeconds(30);
        if (_token is not null)
        {
            socket.Options.SetRequestHeader("Authorization", $"Bearer {_token}");
        }

        var uri = new Uri(new Uri(_http.BaseAddress!.ToString().Replace("http://", "ws://", StringComparison.Ordinal)), path);
        try
        {
            if (_unixHandler is not null)
            {
                using var invoker = new HttpMessageInvoker(_unixHandler, disposeHandler: false);
                await socket.ConnectAsync(uri, invoker, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await socket.ConnectAsync(uri, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (WebSocketException) when (socket.HttpStatusCode != 0)
        {
            int status = (int)socket.HttpStatusCode;
            socket.Dispose();
            return (null, status);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return (socket, 0);
    }

    public Task<ApiResponse> GetAsync(string path, CancellationToken cancellationToken) => SendAsync(HttpMethod.Get, path, null, cancellationToken);

    public Task<ApiResponse> PostAsync(string path, object? body, CancellationToken cancellationToken) => SendAsync(HttpMethod.Post, path, body, cancellationToken);

    /// <summary>A POST that waits for the whole of a save, migration or restore, however long it takes (see <see cref="RequestTimeout"/>).</summary>
    public Task<ApiResponse> PostUntilDoneAsync(string path, object? body, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, path, body, cancellationToken, Timeout.InfiniteTimeSpan);

    public Task<ApiResponse> DeleteAsync(string path, CancellationToken cancellationToken) => SendAsync(HttpMethod.Delete, path, null, cancellationToken);

    /// <summary>
    /// Sends a request; a failure to connect throws <see cref="HttpRequestException"/>, no answer within
    /// <paramref name="timeout"/> (<see cref="RequestTimeout"/> unless given) <see cref="TaskCanceledException"/>, and a
    /// refusal is a response with its problem.
    /// </summary>
    public async Task<ApiResponse> SendAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout ?? _requestTimeout);
        cancellationToken = deadline.Token;
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType(), options: Json);
        }

        using HttpResponseMessage response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        string text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        ApiProblem? problem = null;
        if (!response.IsSuccessStatusCode)
        {
            problem = new ApiProblem((int)response.StatusCode, response.ReasonPhrase ?? "", text);
            try
            {
                using JsonDocument document = JsonDocument.Parse(text);
                JsonElement root = document.RootElement;
                string title = root.TryGetProperty("title", out JsonElement t) ? t.GetString() ?? "" : problem.Title;
                string detail = root.TryGetProperty("detail", out JsonElement d) ? d.GetString() ?? title : title;
                problem = new ApiProblem((int)response.StatusCode, title, detail);
            }
            catch (JsonException)
            {
            }
        }

        return new ApiResponse((int)response.StatusCode, text, problem);
    }

    public void Dispose()
    {
        _http.Dispose();
        _unixHandler?.Dispose();
    }
}
