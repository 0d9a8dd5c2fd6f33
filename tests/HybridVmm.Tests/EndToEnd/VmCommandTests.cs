using System.Net.Http.Headers;
using System.Text.Json;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary><c>hybridvmm vm ...</c>, the management API's command-line client, and the API's TCP listener with its token.</summary>
public class VmCommandTests
{
    private ServeProcess _serve = null!;

    [OneTimeSetUp]
    public void StartServe() => _serve = ServeProcess.Start();

    [OneTimeTearDown]
    public void StopServe() => _serve.Dispose();

    private CliProcess.Result Vm(params string[] args) => CliProcess.RunIn(_serve.Directory, ["vm", .. args, "--api-socket", _serve.SocketPath]);

    [Test]
    public void TheVmCommandsDriveAVmAndPrintTablesOrJson()
    {
        CliProcess.Result created = Vm("create", "cli", "--image", "embedded:hello", "--memory", "8M");
        Assert.That(created.ExitCode, Is.Zero, created.Stderr);
        Assert.That(created.Text, Is.EqualTo("cli: created\n"));

        CliProcess.Result list = Vm("list");
        Assert.That(list.ExitCode, Is.Zero, list.Stderr);
        Assert.That(list.Text, Does.StartWith("NAME").And.Match(@"\ncli +created +\d+ +8M +0 "));

        CliProcess.Result started = Vm("start", "cli");
        Assert.That(started.Text, Is.EqualTo("cli: running\n"), started.Stderr);

        // hello prints and exits at once; its state ends as stopped with its exit reason.
        JsonElement vm = default;
        for (int i = 0; i < 600 && (vm.ValueKind == JsonValueKind.Undefined || vm.GetProperty("state").GetString() != "stopped"); i++)
        {
            CliProcess.Result json = Vm("show", "cli", "--json");
            Assert.That(json.ExitCode, Is.Zero, json.Stderr);
            vm = JsonDocument.Parse(json.Text).RootElement.Clone();
        }

        CliProcess.Result console = Vm("console", "cli");
        CliProcess.Result show = Vm("show", "cli");
        Assert.Multiple(() =>
        {
            Assert.That(vm.GetProperty("exit").GetProperty("reason").GetString(), Is.EqualTo("guest-exit"));
            Assert.That(console.Text, Does.Contain("Hello from a HybridVmm guest!"));
            Assert.That(show.Text, Does.Contain("state            stopped").And.Contain("exit             guest-exit (value 0)").And.Contain("io-write"));
        });

        CliProcess.Result deleted = Vm("delete", "cli");
        Assert.That(deleted.Text, Is.EqualTo("cli: deleted\n"), deleted.Stderr);
    }

    [Test]
    public void VmPartitionsListsTheRootThenEachGuestWithItsVcpus()
    {
        CliProcess.Result created = Vm("create", "smp", "--image", "embedded:hello", "--memory", "8M", "--cpus", "2");
        Assert.That(created.ExitCode, Is.Zero, created.Stderr);
        CliProcess.Result table = Vm("partitions");
        CliProcess.Result json = Vm("partitions", "--json");
        Vm("delete", "smp");
        Assert.Multiple(() =>
        {
            Assert.That(table.ExitCode, Is.Zero, table.Stderr);
            Assert.That(table.Text, Does.StartWith("ID  KIND   NAME"));
            Assert.That(table.Text, Does.Match(@"\n0 +root +root +running +- +- +- "), "the root partition first, with no VM, RAM or vCPUs of its own");
            Assert.That(table.Text, Does.Match(@"\n\d+ +guest +smp +created +smp +8M +runnable waiting-for-sipi +0 "), "the boot processor is ready to run, the AP waits for INIT/SIPI");
            Assert.That(JsonDocument.Parse(json.Text).RootElement[0].GetProperty("kind").GetString(), Is.EqualTo("root"));
        });
    }

    [Test]
    public void ARefusedRequestIsOneMessageAndTheDocumentedStatus()
    {
        CliProcess.Result unknown = Vm("pause", "nobody");
        Assert.Multiple(() =>
        {
            Assert.That(unknown.ExitCode, Is.EqualTo(ExitStatus.ApiRefused));
            Assert.That(unknown.Stderr, Is.EqualTo("hybridvmm: error: no VM named 'nobody' (404 Not found)\n"));
        });

        Assert.That(Vm("create", "stopper", "--image", "embedded:hello", "--memory", "8M").ExitCode, Is.Zero);
        CliProcess.Result resume = Vm("resume", "stopper");
        Assert.That(resume.ExitCode, Is.EqualTo(ExitStatus.ApiRefused));
        Assert.That(resume.Stderr, Does.Contain("has not been started").And.Not.Contain("   at "));
        Vm("delete", "stopper");
    }

    [Test]
    public void ShellCompletionSuggestsTheVmCommandsAndTheirOptions()
    {
        // System.CommandLine's [suggest:POSITION] directive, which dotnet-suggest's shell scripts call on Tab.
        CliProcess.Result commands = CliProcess.RunIn(_serve.Directory, "[suggest:7]", "vm paus");
        CliProcess.Result options = CliProcess.RunIn(_serve.Directory, "[suggest:10]", "vm create ");
        Assert.Multiple(() =>
        {
            Assert.That(commands.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { "pause" }));
            Assert.That(options.Text.Split('\n'), Does.Contain("--image").And.Contain("--snapshot").And.Contain("--api-socket"));
        });
    }

    [Test]
    public void WithoutAServeTheClientSaysSoAndExitsUnavailable()
    {
        CliProcess.Result result = CliProcess.RunIn(_serve.Directory, "vm", "list", "--api-socket", Path.Combine(_serve.Directory, "nobody.sock"));
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Unavailable));
            Assert.That(result.Stderr, Does.Contain("no management API socket at").And.Not.Contain("   at "));
        });
    }

    [Test]
    public async Task TheTcpListenerRefusesRequestsWithoutItsToken()
    {
        string directory = ServeProcess.NewDirectory();
        string tokenFile = Path.Combine(directory, "token");
        string token = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        File.WriteAllText(tokenFile, token + "\n");
        using ServeProcess serve = ServeProcess.StartIn(directory, ["--listen", "127.0.0.1:0", "--token-file", tokenFile]);
        Assert.That(serve.Address, Does.StartWith("http://127.0.0.1:"));
        using var http = new HttpClient { BaseAddress = new Uri(serve.Address) };

        ApiReply anonymous = await ApiReply.Get(http, "/api/host");
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token + "x");
        ApiReply wrong = await ApiReply.Get(http, "/api/vms");
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        ApiReply right = await ApiReply.Get(http, "/api/host");
        Assert.Multiple(() =>
        {
            Assert.That(anonymous.Status, Is.EqualTo(401));
            Assert.That(anonymous.MediaType, Is.EqualTo("application/problem+json"));
            Assert.That(wrong.Status, Is.EqualTo(401));
            Assert.That(right.Status, Is.EqualTo(200), right.ToString());
            Assert.That(File.Exists(Path.Combine(directory, "api.sock")), Is.False, "no socket besides the TCP listener");
        });

        string port = serve.Address[(serve.Address.LastIndexOf(':') + 1)..].TrimEnd('/');
        CliProcess.Result withToken = CliProcess.RunIn(directory, "vm", "host", "--connect", $"127.0.0.1:{port}", "--token-file", tokenFile);
        string badTokenFile = Path.Combine(directory, "bad");
        File.WriteAllText(badTokenFile, "not-the-token-at-all");
        CliProcess.Result withoutToken = CliProcess.RunIn(directory, "vm", "host", "--connect", $"127.0.0.1:{port}", "--token-file", badTokenFile);
        Assert.Multiple(() =>
        {
            Assert.That(withToken.ExitCode, Is.Zero, withToken.Stderr);
            Assert.That(withToken.Text, Does.Contain("host memory"));
            Assert.That(withoutToken.ExitCode, Is.EqualTo(ExitStatus.PermissionDenied));
            Assert.That(withoutToken.Stderr, Does.Contain("Bearer"));
        });
    }

    [Test]
    public void ListenWithoutATokenFileIsAUsageError()
    {
        string directory = ServeProcess.NewDirectory();
        try
        {
            CliProcess.Result result = CliProcess.RunIn(directory, "serve", "--listen", "127.0.0.1:0");
            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.Usage));
                Assert.That(result.Stderr, Is.EqualTo("hybridvmm: error: --listen needs --token-file FILE: a TCP listener answers only requests with that bearer token\n"));
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task AStaleSocketIsReplacedButAnOrdinaryFileIsNot()
    {
        string directory = ServeProcess.NewDirectory();
        string stale = Path.Combine(directory, "api.sock");
        using (var dead = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            dead.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(stale)); // a serve that was killed leaves its file behind
        }

        string notASocket = Path.Combine(directory, "notes.txt");
        File.WriteAllText(notASocket, "keep me");
        CliProcess.Result refused = CliProcess.RunIn(directory, "serve", "--api-socket", notASocket);
        Assert.Multiple(() =>
        {
            Assert.That(refused.ExitCode, Is.EqualTo(ExitStatus.CannotWrite));
            Assert.That(refused.Stderr, Does.Contain("is not a socket of a stopped serve"));
            Assert.That(File.ReadAllText(notASocket), Is.EqualTo("keep me"));
        });

        using ServeProcess serve = ServeProcess.StartIn(directory, ["--api-socket", "api.sock"]);
        using HttpClient api = serve.UnixClient();
        Assert.That((await ApiReply.Get(api, "/api/host")).Status, Is.EqualTo(200));
    }

    [Test]
    public void ASecondServeOnALiveSocketIsRefused()
    {
        CliProcess.Result result = CliProcess.RunIn(_serve.Directory, "serve", "--api-socket", _serve.SocketPath);
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(ExitStatus.CannotWrite));
            Assert.That(result.Stderr, Does.Contain("another hybridvmm serve is listening"));
            Assert.That(File.Exists(_serve.SocketPath), Is.True, "the first serve keeps its socket");
        });
    }
}
