using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using HybridVmm.Tests.Support;
using Microsoft.Playwright;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// The browser dashboard (docs/serve.md#the-dashboard) in a real headless browser: Debian's chromium, driven by
/// Playwright, against a real serve on TCP with its token. The page shows the guests the API has, and its buttons
/// act through the API. Without /usr/bin/chromium the tests fail and say how to install it (.ci/run does).
/// </summary>
[NonParallelizable]
public class DashboardTests
{
    private const string Chromium = "/usr/bin/chromium";

    private ServeProcess _serve = null!;
    private HttpClient _api = null!;
    private string _token = "";
    private string _spin = "";
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;

    [OneTimeSetUp]
    public async Task StartServeAndBrowser()
    {
        if (!File.Exists(Chromium))
        {
            Assert.Fail($"the dashboard tests need Debian's chromium at {Chromium}: apt-get install chromium (.ci/run installs it)");
        }

        string directory = ServeProcess.NewDirectory();
        string tokenFile = Path.Combine(directory, "token");
        _token = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        File.WriteAllText(tokenFile, _token + "\n");
        _serve = ServeProcess.StartIn(directory, ["--listen", "127.0.0.1:0", "--token-file", tokenFile]);
        _api = new HttpClient { BaseAddress = new Uri(_serve.Address), Timeout = TimeSpan.FromMinutes(1) };
        _api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _token);

        string spin = _spin = Path.Combine(directory, "spin.elf");
        File.WriteAllBytes(spin, FlatKernel.Build(a =>
        {
            var top = a.CreateLabel();
            a.mov(Iced.Intel.AssemblerRegisters.dx, 0x80);
            a.Label(ref top);
            a.inc(Iced.Intel.AssemblerRegisters.eax);
            a.@out(Iced.Intel.AssemblerRegisters.dx, Iced.Intel.AssemblerRegisters.al); // the POST-code port: an exit to the root on every turn
            a.jmp(top);
        }));
        foreach (string name in new[] { "alpha", "beta" })
        {
            ApiReply created = await ApiReply.Post(_api, "/api/vms", new { name, image = spin, memory = "4M", start = true });
            Assert.That(created.Status, Is.EqualTo(201), created.ToString());
        }

        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium,
            Headless = true,
            // As root the sandbox cannot start; the rest keeps chromium off the (closed) network.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"],
        });
    }

    [OneTimeTearDown]
    public async Task StopServeAndBrowser()
    {
        if (_browser is not null)
        {
            await _browser.CloseAsync();
        }

        _playwright?.Dispose();
        _api?.Dispose();
        _serve?.Dispose();
    }

    [Test]
    public async Task ThePageShowsTwoRunningGuestsAndItsPauseButtonPausesOne()
    {
        IPage page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 800 } });
        IResponse? response = await page.GotoAsync($"{_serve.Address.TrimEnd('/')}/?token={_token}");
        Assert.That(response?.Status, Is.EqualTo(200), "the dashboard page with the token in its URL");

        ILocator alpha = page.Locator("article.guest[data-vm='alpha']");
        ILocator beta = page.Locator("article.guest[data-vm='beta']");
        await Assertions.Expect(alpha.Locator(".state")).ToHaveTextAsync("running");
        await Assertions.Expect(beta.Locator(".state")).ToHaveTextAsync("running");
        await Assertions.Expect(page.Locator("#root")).ToContainTextAsync("worker.alpha");
        // The guest's exits reach the root: after two reads the page shows io-write exits per second.
        await Assertions.Expect(alpha.Locator("table.exits")).ToContainTextAsync("io-write");

        await alpha.Locator("button.pause").ClickAsync();
        await Assertions.Expect(alpha.Locator(".state")).ToHaveTextAsync("paused");

        ApiReply alphaNow = await ApiReply.Get(_api, "/api/vms/alpha");
        ApiReply betaNow = await ApiReply.Get(_api, "/api/vms/beta");
        Assert.Multiple(() =>
        {
            Assert.That(alphaNow.State, Is.EqualTo("paused"), "the button paused the VM through the API");
            Assert.That(betaNow.State, Is.EqualTo("running"), "the other guest runs on");
        });
        await Assertions.Expect(alpha.Locator("button.resume")).ToBeEnabledAsync();
        await Assertions.Expect(alpha.Locator("button.pause")).ToBeDisabledAsync();

        string screenshot = Path.Combine(TestContext.CurrentContext.WorkDirectory, "dashboard.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = screenshot, FullPage = true });
        TestContext.AddTestAttachment(screenshot, "the dashboard with 'alpha' paused and 'beta' running");

        await alpha.Locator("button.resume").ClickAsync();
        await Assertions.Expect(alpha.Locator(".state")).ToHaveTextAsync("running");
        Assert.That((await ApiReply.Get(_api, "/api/vms/alpha")).State, Is.EqualTo("running"));
    }

    [Test]
    public async Task TheMigrateButtonMovesAGuestToAnotherServeAndThePageLetsItGo()
    {
        // A second host that takes migrations without a token (the dashboard's serve has no --migration-token-file).
        using ServeProcess target = ServeProcess.Start("--migration-listen", "127.0.0.1:0", "--migration-insecure");
        using HttpClient targetApi = target.UnixClient();
        string endpoint = "";
        for (int i = 0; i < 600 && endpoint.Length == 0; i++)
        {
            ApiReply host = await ApiReply.Get(targetApi, "/api/host");
            endpoint = host.Body.TryGetProperty("migrationEndpoint", out var e) && e.ValueKind == System.Text.Json.JsonValueKind.String ? e.GetString()! : "";
            await Task.Delay(endpoint.Length == 0 ? 100 : 0);
        }

        ApiReply created = await ApiReply.Post(_api, "/api/vms", new { name = "gamma", image = _spin, memory = "4M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());
        IPage page = await _browser.NewPageAsync();
        await page.GotoAsync($"{_serve.Address.TrimEnd('/')}/?token={_token}");
        ILocator gamma = page.Locator("article.guest[data-vm='gamma']");
        await Assertions.Expect(gamma.Locator(".state")).ToHaveTextAsync("running");

        // The button asks for the target's HOST:PORT in a prompt, as Checkpoint asks for a file.
        page.Dialog += async (_, dialog) => await dialog.AcceptAsync(endpoint);
        await gamma.Locator("button.migrate").ClickAsync();
        await Assertions.Expect(page.Locator("#message")).ToContainTextAsync($"'gamma' migrated to {endpoint}");
        await Assertions.Expect(gamma).ToHaveCountAsync(0);

        Assert.Multiple(async () =>
        {
            Assert.That((await ApiReply.Get(_api, "/api/vms/gamma")).Status, Is.EqualTo(404), "it left the dashboard's host");
            Assert.That((await ApiReply.Get(targetApi, "/api/vms/gamma")).State, Is.EqualTo("running"), "it runs on the target");
        });
    }

    [Test]
    public async Task TheDashboardNeedsTheTokenOnTcpAndLoadsNothingFromOutsideTheHost()
    {
        using var anonymous = new HttpClient { BaseAddress = new Uri(_serve.Address) };
        HttpResponseMessage refused = await anonymous.GetAsync("/");
        Assert.That((int)refused.StatusCode, Is.EqualTo(401));

        IPage page = await _browser.NewPageAsync();
        var requested = new List<string>();
        var answered = new System.Collections.Concurrent.ConcurrentDictionary<string, (int Status, string? Type)>();
        page.Request += (_, request) => requested.Add(request.Url);
        page.Response += (_, response) => answered[response.Url] = (response.Status, response.Headers.GetValueOrDefault("content-type"));
        await page.GotoAsync($"{_serve.Address.TrimEnd('/')}/?token={_token}");
        await Assertions.Expect(page.Locator("article.guest[data-vm='beta'] .state")).Not.ToBeEmptyAsync();
        string origin = new Uri(_serve.Address).GetLeftPart(UriPartial.Authority);
        Assert.That(requested, Is.Not.Empty);
        Assert.That(requested.Where(url => !url.StartsWith(origin, StringComparison.Ordinal)), Is.Empty, "every request goes to serve itself");

        // The console's terminal is the vendored xterm.js (Api/Dashboard/vendor), from serve too: its UMD bundle,
        // loaded by a plain <script>, defines the global Terminal, and each guest's pane holds one.
        Assert.Multiple(() =>
        {
            Assert.That(answered.GetValueOrDefault($"{origin}/dashboard/vendor/xterm/xterm.js"), Is.EqualTo((200, "text/javascript; charset=utf-8")),
                "xterm.js, requested from serve and answered");
            Assert.That(answered.GetValueOrDefault($"{origin}/dashboard/vendor/xterm/xterm.css"), Is.EqualTo((200, "text/css; charset=utf-8")),
                "xterm.css, requested from serve and answered");
        });
        Assert.That(await page.EvaluateAsync<string>("typeof Terminal"), Is.EqualTo("function"), "the bundle defines Terminal");
        await Assertions.Expect(page.Locator("article.guest[data-vm='beta'] .console .xterm .xterm-rows")).ToHaveCountAsync(1);
    }

    [Test]
    public async Task AGuestsConsoleOutputShowsInItsTerminal()
    {
        // A guest that prints two lines on COM1, LF-terminated as simple guests do, and exits through port 0xF4.
        string printer = Path.Combine(_serve.Directory, "printer.elf");
        File.WriteAllBytes(printer, FlatKernel.Build(a =>
        {
            a.mov(Iced.Intel.AssemblerRegisters.dx, 0x3F8);
            foreach (char c in "hello from the guest's COM1\nsecond line\n")
            {
                a.mov(Iced.Intel.AssemblerRegisters.al, (byte)c);
                a.@out(Iced.Intel.AssemblerRegisters.dx, Iced.Intel.AssemblerRegisters.al);
            }

            a.mov(Iced.Intel.AssemblerRegisters.eax, 0);
            a.@out(0xF4, Iced.Intel.AssemblerRegisters.eax);
            a.hlt();
        }));
        ApiReply created = await ApiReply.Post(_api, "/api/vms", new { name = "printer", image = printer, memory = "4M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());

        IPage page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 800 } });
        await page.GotoAsync($"{_serve.Address.TrimEnd('/')}/?token={_token}");
        // The terminal's screen, as xterm.js draws it: one element per row. The second line starts in column 0 (a
        // regular expression: a string would be compared with its white space collapsed, leading spaces gone).
        ILocator rows = page.Locator("article.guest[data-vm='printer'] .console .xterm-rows > div");
        await ShowConsoleAsync(page, "printer");
        await Assertions.Expect(rows.Nth(0)).ToHaveTextAsync(new Regex(@"^hello from the guest's COM1\s*$"));
        await Assertions.Expect(rows.Nth(1)).ToHaveTextAsync(new Regex(@"^second line\s*$"));
        await Assertions.Expect(rows.Nth(2)).ToHaveTextAsync(new Regex(@"^\s*$"));
        // The terminal fits its pane: as many columns as fit across it, not a fixed 80 that would overflow it.
        double[] widths = await page.EvaluateAsync<double[]>(@"() => {
            const pane = document.querySelector(""article.guest[data-vm='printer'] .console"");
            const style = getComputedStyle(pane);
            return [pane.querySelector('.xterm-screen').getBoundingClientRect().width,
                pane.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)];
        }");
        Assert.That(widths[0], Is.GreaterThan(0).And.LessThanOrEqualTo(widths[1]), "the terminal's screen is no wider than its pane");

        Assert.That((await ApiReply.Delete(_api, "/api/vms/printer")).Status, Is.LessThan(300));
    }

    [Test]
    public async Task AnAttachedConsoleTypesTheTerminalsKeysIntoCom1AndShowsTheAnswer()
    {
        (IPage page, ILocator guest, ILocator rows) = await OpenEchoGuestAsync("echo");   // its kept output, before any attach

        await guest.Locator("button.attach").ClickAsync();
        await Assertions.Expect(guest.Locator("button.attach")).ToHaveTextAsync("Detach console");
        await Assertions.Expect(guest.Locator(".console")).ToHaveClassAsync(new Regex(@"\battached\b"));
        // Attaching focuses the terminal: the keys go to xterm.js, whose onData sends them over the WebSocket to COM1.
        await page.Keyboard.TypeAsync("hi");
        await Assertions.Expect(rows.Nth(1)).ToHaveTextAsync("HI");   // the guest's answer, in upper case
        string screenshot = Path.Combine(TestContext.CurrentContext.WorkDirectory, "dashboard-console.png");
        await guest.ScreenshotAsync(new LocatorScreenshotOptions { Path = screenshot });
        TestContext.AddTestAttachment(screenshot, "the echo guest's pane with its console attached, after typing 'hi'");
        await page.Keyboard.PressAsync("Backspace");
        await page.Keyboard.PressAsync("Enter");
        await page.Keyboard.PressAsync("Control+C");
        // The bytes a terminal sends: Backspace is DEL (0x7F), Enter CR, Ctrl+C ETX; the guest echoes them into its output.
        Assert.That(await KeptOutputAsync("echo", "ready\nHI\x7f\r\x03"), Is.EqualTo("ready\nHI\x7f\r\x03"));

        // Detach: the button frees the VM's one console, and the pane shows the kept output again.
        await guest.Locator("button.attach").ClickAsync();
        await Assertions.Expect(guest.Locator("button.attach")).ToHaveTextAsync("Attach console");
        await Assertions.Expect(guest.Locator(".console")).Not.ToHaveClassAsync(new Regex(@"\battached\b"));
        await Assertions.Expect(rows.Nth(1)).ToHaveTextAsync("HI");

        // Attach again and end the guest with '.': the VM stopping closes the console and the page says why.
        await guest.Locator("button.attach").ClickAsync();
        await Assertions.Expect(guest.Locator("button.attach")).ToHaveTextAsync("Detach console");
        await page.Keyboard.TypeAsync(".");
        await Assertions.Expect(page.Locator("#message")).ToContainTextAsync("'echo' console: the VM stopped");
        await Assertions.Expect(guest.Locator("button.attach")).ToHaveTextAsync("Attach console");
        ApiReply vm = await ApiReply.Get(_api, "/api/vms/echo");
        Assert.That(vm.Body.GetProperty("exit").GetProperty("value").GetInt32(), Is.EqualTo(SerialEchoGuest.ExitValue), vm.ToString());
        Assert.That((await ApiReply.Delete(_api, "/api/vms/echo")).Status, Is.LessThan(300));
    }

    [Test]
    public async Task ADetachedTerminalAddsWhatTheGuestWritesNextOnce()
    {
        (IPage page, _, ILocator rows) = await OpenEchoGuestAsync("later");

        // Another client (as `hybridvmm vm console`) types while the page only reads the kept output: the page's
        // terminal gets the new bytes after what it has, not the whole output again.
        using (var console = new System.Net.WebSockets.ClientWebSocket())
        {
            console.Options.SetRequestHeader("Authorization", $"Bearer {_token}");
            await console.ConnectAsync(new Uri($"{_serve.Address.Replace("http://", "ws://").TrimEnd('/')}/api/vms/later/console"), CancellationToken.None);
            await console.SendAsync("abc\n"u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Binary, true, CancellationToken.None);
            Assert.That(await KeptOutputAsync("later", "ready\nABC\n"), Is.EqualTo("ready\nABC\n"));
            // Meanwhile the page cannot attach (one console per VM), and says so.
            ILocator attach = page.Locator("article.guest[data-vm='later'] button.attach");
            await attach.ClickAsync();
            await Assertions.Expect(page.Locator("#message")).ToContainTextAsync("'later' console: could not attach");
            await Assertions.Expect(attach).ToHaveTextAsync("Attach console");
            await console.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "detach", CancellationToken.None);
        }

        await Assertions.Expect(rows.Nth(1)).ToHaveTextAsync("ABC");
        await Assertions.Expect(rows.Nth(0)).ToHaveTextAsync("ready");
        await Assertions.Expect(rows.Nth(2)).ToHaveTextAsync(new Regex(@"^\s*$"));
        Assert.That((await ApiReply.Delete(_api, "/api/vms/later")).Status, Is.LessThan(300));
    }

    /// <summary>
    /// Starts a <see cref="SerialEchoGuest"/> named <paramref name="name"/>, opens the dashboard on it, and waits until its
    /// terminal shows the guest's "ready": the page, the guest's pane, and its terminal's rows.
    /// </summary>
    private async Task<(IPage Page, ILocator Guest, ILocator Rows)> OpenEchoGuestAsync(string name)
    {
        string echo = Path.Combine(_serve.Directory, "echo.elf");
        File.WriteAllBytes(echo, SerialEchoGuest.Build());
        ApiReply created = await ApiReply.Post(_api, "/api/vms", new { name, image = echo, memory = "4M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());

        IPage page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 800 } });
        await page.GotoAsync($"{_serve.Address.TrimEnd('/')}/?token={_token}");
        ILocator guest = page.Locator($"article.guest[data-vm='{name}']");
        ILocator rows = guest.Locator(".console .xterm-rows > div");
        await ShowConsoleAsync(page, name);
        await Assertions.Expect(rows.Nth(0)).ToHaveTextAsync("ready");
        return (page, guest, rows);
    }

    /// <summary>
    /// Scrolls the guest's console into the window: xterm.js pauses drawing a terminal that is out of sight (its screen
    /// rows then lag its buffer until it is seen again), and a third guest's pane is below the fold at 1280x800.
    /// </summary>
    private static Task ShowConsoleAsync(IPage page, string name) =>
        page.Locator($"article.guest[data-vm='{name}'] .console").ScrollIntoViewIfNeededAsync();

    /// <summary>The VM's kept console output (GET .../console) once it ends with <paramref name="expected"/>, or what it is at the deadline.</summary>
    private async Task<string> KeptOutputAsync(string name, string expected)
    {
        string kept = "";
        for (var deadline = DateTime.UtcNow.AddMinutes(1); DateTime.UtcNow < deadline; await Task.Delay(100))
        {
            kept = System.Text.Encoding.Latin1.GetString(await _api.GetByteArrayAsync($"/api/vms/{name}/console"));
            if (kept.EndsWith(expected, StringComparison.Ordinal))
            {
                break;
            }
        }

        return kept;
    }
}
