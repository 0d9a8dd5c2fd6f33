using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// The serial console over the API's WebSocket (docs/serve.md): what a VM wrote while detached is replayed on attach,
/// input reaches COM1, one console at a time, and the VM stopping closes it. Through the API and through
/// <c>hybridvmm vm console</c>.
/// </summary>
public class ConsoleWebSocketTests
{
    private ServeProcess _serve = null!;
    private HttpClient _api = null!;
    private string _echoImage = "";

    [OneTimeSetUp]
    public void StartServe()
    {
        _serve = ServeProcess.Start();
        _api = _serve.UnixClient();
        _echoImage = Path.Combine(_serve.Directory, "echo.elf");
        File.WriteAllBytes(_echoImage, SerialEchoGuest.Build());
    }

    [OneTimeTearDown]
    public void StopServe()
    {
        _api.Dispose();
        _serve.Dispose();
    }

    [Test]
    public async Task AnAttachedConsoleReplaysTheOutputTypesIntoCom1AndClosesWhenTheVmStops()
    {
        Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = "echo", image = _echoImage, memory = "4M", start = true })).Status, Is.EqualTo(201));
        await WaitForConsoleBytesAsync("echo", "ready\n".Length); // written while no console was attached

        using (ClientWebSocket console = await AttachAsync("echo"))
        {
            Assert.That(await ReadUntilAsync(console, "ready\n"), Is.EqualTo("ready\n"), "the detached output, replayed");
            using ClientWebSocket second = new();
            WebSocketException? refused = Assert.ThrowsAsync<WebSocketException>(async () => await ConnectAsync(second, "echo"));
            Assert.That(second.HttpStatusCode, Is.EqualTo(System.Net.HttpStatusCode.Conflict), refused?.Message);

            await console.SendAsync(Encoding.ASCII.GetBytes("hi"), WebSocketMessageType.Binary, true, CancellationToken.None);
            Assert.That(await ReadUntilAsync(console, "HI"), Is.EqualTo("HI"));
            await console.CloseAsync(WebSocketCloseStatus.NormalClosure, "detach", CancellationToken.None);
        }

        using (ClientWebSocket again = await AttachAsync("echo"))
        {
            Assert.That(await ReadUntilAsync(again, "ready\nHI"), Is.EqualTo("ready\nHI"), "attaching again replays everything so far");
            await again.SendAsync(Encoding.ASCII.GetBytes("."), WebSocketMessageType.Binary, true, CancellationToken.None);
            var buffer = new byte[256];
            WebSocketReceiveResult closed = await again.ReceiveAsync(buffer, CancellationToken.None);
            Assert.That(closed.MessageType, Is.EqualTo(WebSocketMessageType.Close));
            Assert.That(again.CloseStatusDescription, Is.EqualTo("the VM stopped"));
        }

        ApiReply vm = await ApiReply.Get(_api, "/api/vms/echo");
        Assert.That(vm.Body.GetProperty("exit").GetProperty("value").GetInt32(), Is.EqualTo(SerialEchoGuest.ExitValue));
    }

    /// <summary>
    /// A guest that resets the machine boots again (serve's default), and the console attached to it stays attached: it
    /// sees the new boot's output, with nothing replayed twice, and its keys reach the new boot's COM1.
    /// </summary>
    [Test]
    public async Task AnAttachedConsoleStaysAttachedAcrossTheGuestsReboot()
    {
        Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = "reboots", image = _echoImage, memory = "4M", start = true })).Status, Is.EqualTo(201));
        using ClientWebSocket console = await AttachAsync("reboots");
        Assert.That(await ReadUntilAsync(console, "ready\n"), Is.EqualTo("ready\n"));
        await console.SendAsync(Encoding.ASCII.GetBytes("a!"), WebSocketMessageType.Binary, true, CancellationToken.None);
        Assert.That(await ReadUntilAsync(console, "Aready\n"), Is.EqualTo("Aready\n"), "the echo, then the second boot's output");
        await console.SendAsync(Encoding.ASCII.GetBytes("b."), WebSocketMessageType.Binary, true, CancellationToken.None);
        Assert.That(await ReadUntilAsync(console, "B"), Is.EqualTo("B"), "the second boot echoes what the same console typed");
        var buffer = new byte[256];
        WebSocketReceiveResult closed = await console.ReceiveAsync(buffer, CancellationToken.None);
        Assert.Multiple(async () =>
        {
            Assert.That(closed.MessageType, Is.EqualTo(WebSocketMessageType.Close));
            Assert.That(console.CloseStatusDescription, Is.EqualTo("the VM stopped"));
            Assert.That((await ApiReply.Get(_api, "/api/vms/reboots/console")).Body.GetString(), Is.EqualTo("ready\nAready\nB"), "the buffer runs on across the boot");
        });
    }

    [Test]
    public async Task TheVmConsoleCommandTypesItsInputAndEndsWhenTheVmStops()
    {
        Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = "cliecho", image = _echoImage, memory = "4M", start = true })).Status, Is.EqualTo(201));
        CliProcess.Result result = CliProcess.RunWithInput(Encoding.ASCII.GetBytes("abc."), "vm", "console", "cliecho", "--api-socket", _serve.SocketPath);
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Success), result.Stderr);
            Assert.That(result.Text, Is.EqualTo("ready\nABC"));
            Assert.That(result.Stderr, Does.Contain("'cliecho' stopped; console closed (the VM stopped)"));
        });

        CliProcess.Result unknown = CliProcess.RunWithInput([], "vm", "console", "nobody", "--api-socket", _serve.SocketPath);
        Assert.That(unknown.ExitCode, Is.EqualTo(ExitStatus.ApiRefused));
        Assert.That(unknown.Stderr, Does.Contain("no VM named 'nobody'"));
    }

    [Test]
    public async Task OnATerminalKeysReachTheGuestRawAndCtrlAXDetachesWhileTheVmRunsOn()
    {
        if (!File.Exists("/usr/bin/script")) Assert.Ignore("util-linux script is not installed");
        Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = "tty", image = _echoImage, memory = "4M", start = true })).Status, Is.EqualTo(201));
        await WaitForConsoleBytesAsync("tty", "ready\n".Length);
        string attach = $"vm console tty --api-socket \"{_serve.SocketPath}\"";

        using (TerminalSession session = TerminalSession.StartHybridVmm(attach))
        {
            session.WaitFor("ready");
            session.Type("abc");
            session.WaitFor("ABC");
            session.Type("\u0001x");
            string output = session.WaitForEnd();
            Assert.Multiple(() =>
            {
                Assert.That(output, Does.Not.Contain("abc"), "the terminal did not echo: raw mode");
                Assert.That(output, Does.Contain("detached from 'tty'; it runs on"));
                Assert.That(output, Does.Contain("status=0"), output);
                TerminalSession.AssertTerminalRestored(output);
            });
        }

        Assert.That((await ApiReply.Get(_api, "/api/vms/tty")).State, Is.EqualTo("running"), "detaching leaves the VM running");

        using (TerminalSession session = TerminalSession.StartHybridVmm(attach))
        {
            session.WaitFor(@"ready\r?\nABC"); // replayed on attach
            session.Type("ok.");
            string output = session.WaitForEnd();
            Assert.Multiple(() =>
            {
                Assert.That(output, Does.Contain("ABCOK"));
                Assert.That(output, Does.Contain("'tty' stopped; console closed (the VM stopped)"));
                Assert.That(output, Does.Contain("status=0"), output);
                TerminalSession.AssertTerminalRestored(output);
            });
        }
    }

    [Test]
    public async Task SigtermStopsServePromptlyWithAConsoleAttached()
    {
        using ServeProcess serve = ServeProcess.Start();
        using HttpClient api = serve.UnixClient();
        string echo = Path.Combine(serve.Directory, "echo.elf");
        File.WriteAllBytes(echo, SerialEchoGuest.Build());
        Assert.That((await ApiReply.Post(api, "/api/vms", new { name = "held", image = echo, memory = "4M", start = true })).Status, Is.EqualTo(201));
        var console = new ClientWebSocket();
        await ConnectAsync(console, "held", serve.SocketPath);
        Task<string> reading = ReadUntilAsync(console, "never printed");

        (int exitCode, string stdout) = serve.Stop();
        Assert.Multiple(() =>
        {
            Assert.That(exitCode, Is.Zero, serve.Stderr);
            Assert.That(stdout, Does.Contain("held"), "the summary table lists the API's VM");
            Assert.That(serve.Stderr, Does.Contain("VM held stopped: StoppedByRoot"));
        });
        // Closed by serve with its reason, not aborted when the web server gave up on the request at its shutdown timeout.
        Assert.That(async () => await reading, Throws.Nothing, "the console was closed, not aborted");
        Assert.That(console.CloseStatusDescription, Is.EqualTo("serve is stopping"));
        console.Dispose();
    }

    private async Task WaitForConsoleBytesAsync(string name, int bytes)
    {
        for (int i = 0; i < 3000; i++)
        {
            if ((await ApiReply.Get(_api, $"/api/vms/{name}/stats")).Body.GetProperty("consoleBytes").GetInt64() >= bytes)
            {
                return;
            }

            await Task.Delay(100);
        }

        Assert.Fail($"{name} wrote fewer than {bytes} bytes in five minutes");
    }

    private async Task<ClientWebSocket> AttachAsync(string name)
    {
        var socket = new ClientWebSocket();
        await ConnectAsync(socket, name);
        return socket;
    }

    private Task ConnectAsync(ClientWebSocket socket, string name, string? socketPath = null)
    {
        socket.Options.CollectHttpResponseDetails = true;
        string path = socketPath ?? _serve.SocketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await unix.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                return new NetworkStream(unix, ownsSocket: true);
            },
        };
        return socket.ConnectAsync(new Uri($"ws://localhost/api/vms/{name}/console"), new HttpMessageInvoker(handler), CancellationToken.None);
    }

    /// <summary>Reads binary messages until the text received ends with <paramref name="expected"/> (bounded: a hang fails).</summary>
    private static async Task<string> ReadUntilAsync(ClientWebSocket socket, string expected)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        while (!text.ToString().EndsWith(expected, StringComparison.Ordinal))
        {
            WebSocketReceiveResult received = await socket.ReceiveAsync(buffer, limit.Token);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                break;
            }

            text.Append(Encoding.ASCII.GetString(buffer, 0, received.Count));
        }

        return text.ToString();
    }
}
