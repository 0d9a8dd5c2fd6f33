using System.Text.Json;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Live migration through the management API (docs/serve.md#live-migration), between two real serve processes on
/// loopback: one with --migration-listen, one that sends a running VM there with <c>vm migrate</c>. The guest's whole
/// output across the move must equal an unmigrated run (QEMU's, for the cpu guest), and every failure must leave the
/// VM running on its source.
/// </summary>
public class ServeMigrationTests
{
    private string _directory = "";
    private string _token = "";
    private string _otherToken = "";
    private string _spinImage = "";

    [OneTimeSetUp]
    public void WriteFiles()
    {
        _directory = ServeProcess.NewDirectory();
        _token = Path.Combine(_directory, "token");
        File.WriteAllText(_token, "migration-token-0123456789\n");
        _otherToken = Path.Combine(_directory, "other-token");
        File.WriteAllText(_otherToken, "a-different-token-9876543210\n");
        _spinImage = Path.Combine(_directory, "spin.elf");
        File.WriteAllBytes(_spinImage, FlatKernel.Spin());
    }

    [OneTimeTearDown]
    public void RemoveFiles() => Directory.Delete(_directory, recursive: true);

    /// <summary>
    /// The guest prints a prompt and then polls COM1 for input for ever, so the migration always finds it running
    /// however fast or slow this machine is (a guest that computes to its end can finish before the client's request
    /// arrives). Its input is typed on the target: the UART's state travelled with it. The reference is an unmigrated
    /// twin on the source given the same input.
    /// </summary>
    [Test]
    public async Task ARunningGuestMovesToAnotherServeAndItsWholeOutputIsWhatAnUnmigratedRunPrints()
    {
        string echo = Path.Combine(_directory, "echo.elf");
        File.WriteAllBytes(echo, SerialEchoGuest.Build());
        using Hosts hosts = await Hosts.StartAsync(_token, _token);
        (ServeProcess source, ServeProcess target, HttpClient sourceApi, HttpClient targetApi, string endpoint) =
            (hosts.Source, hosts.Target, hosts.SourceApi, hosts.TargetApi, hosts.Endpoint);
        byte[] input = "hi there."u8.ToArray();

        Assert.That((await ApiReply.Post(sourceApi, "/api/vms", new { name = "twin", image = echo, memory = "16M", start = true })).Status, Is.EqualTo(201));
        CliProcess.Result unmigrated = CliProcess.RunWithInput(input, "vm", "console", "twin", "--api-socket", source.SocketPath);
        Assert.That(unmigrated.ExitCode, Is.Zero, unmigrated.Stderr);

        ApiReply created = await ApiReply.Post(sourceApi, "/api/vms", new { name = "mover", image = echo, memory = "16M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());
        // The prompt is written here, so the console's backlog has to travel too.
        await WaitForAsync(sourceApi, "mover", vm => vm.GetProperty("statistics").GetProperty("consoleBytes").GetInt64() == "ready\n".Length);
        long usedBefore = (await ApiReply.Get(sourceApi, "/api/host")).Body.GetProperty("hostMemoryUsedBytes").GetInt64();

        CliProcess.Result migrated = CliProcess.Run("vm", "migrate", "mover", "--to", endpoint, "--api-socket", source.SocketPath);
        Assert.That(migrated.ExitCode, Is.Zero, migrated.Stderr);
        Assert.That(migrated.Text, Does.Match(@"^mover: migrated to 127\.0\.0\.1:\d+ at instruction [\d,]+: \d+ pre-copy rounds? .* it runs there now\n$"));

        ApiReply gone = await ApiReply.Get(sourceApi, "/api/vms/mover");
        long usedAfter = (await ApiReply.Get(sourceApi, "/api/host")).Body.GetProperty("hostMemoryUsedBytes").GetInt64();
        CliProcess.Result typed = CliProcess.RunWithInput(input, "vm", "console", "mover", "--api-socket", target.SocketPath);
        await WaitForAsync(targetApi, "mover", vm => vm.GetProperty("state").GetString() == "stopped");
        ApiReply moved = await ApiReply.Get(targetApi, "/api/vms/mover");
        ApiReply twin = await ApiReply.Get(sourceApi, "/api/vms/twin");
        Assert.Multiple(() =>
        {
            Assert.That(gone.Status, Is.EqualTo(404), "the VM has left its source");
            Assert.That(usedBefore - usedAfter, Is.EqualTo(16L << 20), "its memory is back in the source's pool");
            Assert.That(moved.Body.GetProperty("source").GetString(), Does.StartWith("migrated from 127.0.0.1:"));
            Assert.That(typed.ExitCode, Is.Zero, typed.Stderr);
            Assert.That(typed.Text, Is.EqualTo("ready\nHI THERE"), "the console's backlog from the source, then what the guest echoed on the target");
            Assert.That(typed.Text, Is.EqualTo(unmigrated.Text), "the unmigrated twin printed the same");
            Assert.That(moved.Body.GetProperty("exit").GetProperty("value").GetInt32(), Is.EqualTo(twin.Body.GetProperty("exit").GetProperty("value").GetInt32()));
            Assert.That(moved.Body.GetProperty("exit").GetProperty("value").GetInt32(), Is.EqualTo(SerialEchoGuest.ExitValue));
        });
    }

    /// <summary>
    /// A guest with a synthblk disk moves from <c>run --migrate-to</c> into a serve that lists two files of the same size
    /// as disks arrivals may have: the one whose contents are the disk's backs it there (the stream names no path).
    /// The guest's output and the disk's final bytes equal an unmigrated run's.
    /// </summary>
    [Test]
    public async Task ADiskGuestArrivesOnTheListedFileThatIsItsDiskAndFinishesAsAnUnmigratedRun()
    {
        string wholeDisk = Path.Combine(_directory, "whole.img"), disk = Path.Combine(_directory, "disk.img"), other = Path.Combine(_directory, "other.img");
        byte[] otherBytes = Enumerable.Repeat((byte)0x11, 64 * 512).ToArray();
        File.WriteAllBytes(wholeDisk, new byte[64 * 512]);
        File.WriteAllBytes(disk, new byte[64 * 512]);
        File.WriteAllBytes(other, otherBytes);
        string[] enlblk = ["run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon"];
        CliProcess.Result whole = CliProcess.Run([.. enlblk, "--disk", wholeDisk]);
        Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);

        using ServeProcess target = ServeProcess.Start("--migration-listen", "127.0.0.1:0", "--migration-token-file", _token,
            "--migration-disk", other, "--migration-disk", disk);
        using HttpClient targetApi = target.UnixClient();
        string endpoint = await MigrationEndpointAsync(targetApi);
        CliProcess.Result source = CliProcess.Run([.. enlblk, "--disk", disk, "--migrate-at", "150000", "--token-file", _token, "--migrate-to", endpoint]);
        Assert.That(source.ExitCode, Is.Zero, source.Stderr);

        await WaitForAsync(targetApi, "enlblk", vm => vm.GetProperty("state").GetString() == "stopped");
        string output = (await ApiReply.Get(targetApi, "/api/vms/enlblk/console")).Body.GetString()!;
        ApiReply moved = await ApiReply.Get(targetApi, "/api/vms/enlblk");
        Assert.Multiple(() =>
        {
            Assert.That(source.Text + output, Is.EqualTo(whole.Text), "what the source printed, then the target");
            Assert.That(moved.Body.GetProperty("exit").GetProperty("reason").GetString(), Is.EqualTo("guest-exit"));
            Assert.That(File.ReadAllBytes(disk), Is.EqualTo(File.ReadAllBytes(wholeDisk)), "the disk holds what an unmigrated run wrote");
            Assert.That(File.ReadAllBytes(other), Is.EqualTo(otherBytes), "the other listed file was never the disk");
        });
    }

    [Test]
    public async Task ADiskGuestWhoseDiskTheTargetDoesNotListIsRefusedAndFinishesOnItsSource()
    {
        string disk = Path.Combine(_directory, "mine.img"), other = Path.Combine(_directory, "theirs.img");
        File.WriteAllBytes(disk, new byte[64 * 512]);
        File.WriteAllBytes(other, Enumerable.Repeat((byte)0x22, 64 * 512).ToArray());
        string[] enlblk = ["run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon", "--disk", disk];

        using ServeProcess target = ServeProcess.Start("--migration-listen", "127.0.0.1:0", "--migration-token-file", _token, "--migration-disk", other);
        using HttpClient targetApi = target.UnixClient();
        string endpoint = await MigrationEndpointAsync(targetApi);
        CliProcess.Result source = CliProcess.Run([.. enlblk, "--migrate-at", "150000", "--token-file", _token, "--migrate-to", endpoint]);
        ApiReply onTarget = await ApiReply.Get(targetApi, "/api/vms");
        Assert.Multiple(() =>
        {
            Assert.That(source.ExitCode, Is.Zero, source.Stderr);
            Assert.That(source.Stderr, Does.Contain("migration failed").And.Contain("has a synthblk disk").And.Contain("serve --migration-disk"));
            Assert.That(source.Text, Does.EndWith("write across the end -> status 1\n"), "the guest ran to its end on the source");
            Assert.That(onTarget.Body.GetArrayLength(), Is.Zero, "nothing stayed on the target");
        });
    }

    [Test]
    public async Task ATargetThatDoesNotKnowTheTokenIsRefusedAndTheGuestRunsOnAtItsSource()
    {
        using Hosts hosts = await Hosts.StartAsync(_otherToken, _token);
        (ServeProcess source, ServeProcess target, HttpClient sourceApi, HttpClient targetApi, string endpoint) =
            (hosts.Source, hosts.Target, hosts.SourceApi, hosts.TargetApi, hosts.Endpoint);
        await StartSpinningAsync(sourceApi, "stay");

        CliProcess.Result refused = CliProcess.Run("vm", "migrate", "stay", "--to", endpoint, "--api-socket", source.SocketPath);
        long before = (await ApiReply.Get(sourceApi, "/api/vms/stay/stats")).Body.GetProperty("instructionsRetired").GetInt64();
        long after = Instructions(await WaitForAsync(sourceApi, "stay", vm => Instructions(vm) > before));
        ApiReply onTarget = await ApiReply.Get(targetApi, "/api/vms");
        Assert.Multiple(() =>
        {
            Assert.That(refused.ExitCode, Is.EqualTo(77), refused.Stderr);
            Assert.That(refused.Stderr, Does.Contain("'stay' was not migrated to").And.Contain("it stays on this host (403 Migration refused)"));
            Assert.That(after, Is.GreaterThan(before), "the guest runs on at its source");
            Assert.That(onTarget.Body.GetArrayLength(), Is.Zero, "nothing arrived on the target");
            Assert.That(target.Stderr, Does.Contain("Refused a migration from 127.0.0.1:"));
        });
    }

    [Test]
    public async Task ATargetThatAlreadyHasAVmOfThatNameRefusesItBeforeAnyPageMoves()
    {
        using Hosts hosts = await Hosts.StartAsync(_token, _token);
        (HttpClient sourceApi, HttpClient targetApi, string endpoint) = (hosts.SourceApi, hosts.TargetApi, hosts.Endpoint);
        await StartSpinningAsync(sourceApi, "twin");
        Assert.That((await ApiReply.Post(targetApi, "/api/vms", new { name = "twin", image = _spinImage, memory = "4M" })).Status, Is.EqualTo(201));

        ApiReply refused = await ApiReply.Post(sourceApi, "/api/vms/twin/migrate", new { to = endpoint });
        ApiReply stillHere = await ApiReply.Get(sourceApi, "/api/vms/twin");
        ApiReply theirs = await ApiReply.Get(targetApi, "/api/vms/twin");
        Assert.Multiple(() =>
        {
            Assert.That(refused.Status, Is.EqualTo(502), refused.ToString());
            Assert.That(refused.Detail, Does.Contain("a VM named 'twin' already exists on this host").And.Contain("it stays on this host"));
            Assert.That(refused.Body.GetProperty("title").GetString(), Is.EqualTo("Migration failed"));
            Assert.That(stillHere.State, Is.EqualTo("running"));
            Assert.That(theirs.State, Is.EqualTo("created"), "the target's own VM of that name is untouched");
        });
    }

    [Test]
    public async Task EveryRefusalOfAMigrationIsAProblemAndLeavesTheVmAsItWas()
    {
        using ServeProcess source = ServeProcess.Start();
        using HttpClient api = source.UnixClient();
        await StartSpinningAsync(api, "here");
        Assert.That((await ApiReply.Post(api, "/api/vms", new { name = "idle", image = _spinImage, memory = "4M" })).Status, Is.EqualTo(201));

        // A closed port: nothing listens there.
        var closed = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        closed.Start();
        int port = ((System.Net.IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();

        var cases = new (string What, string Vm, object Body, int Status, string Detail)[]
        {
            ("no target", "here", new { }, 400, "'to' must be the HOST:PORT"),
            ("a malformed target", "here", new { to = "nowhere" }, 400, "'to' must be the HOST:PORT"),
            ("an unknown VM", "ghost", new { to = $"127.0.0.1:{port}" }, 404, "no VM named 'ghost'"),
            ("a VM that is not running", "idle", new { to = $"127.0.0.1:{port}" }, 409, "'idle' is created; only a running VM is live-migrated"),
            ("a target nobody listens on", "here", new { to = $"127.0.0.1:{port}" }, 502, $"cannot reach 127.0.0.1:{port}"),
        };
        foreach ((string what, string vm, object body, int status, string detail) in cases)
        {
            ApiReply reply = await ApiReply.Post(api, $"/api/vms/{vm}/migrate", body);
            Assert.Multiple(() =>
            {
                Assert.That(reply.Status, Is.EqualTo(status), $"{what}: {reply}");
                Assert.That(reply.MediaType, Is.EqualTo("application/problem+json"), what);
                Assert.That(reply.Detail, Does.Contain(detail), what);
            });
        }

        Assert.Multiple(async () =>
        {
            Assert.That((await ApiReply.Get(api, "/api/vms/here")).State, Is.EqualTo("running"), "a failed migration resumes the VM where it was");
            Assert.That((await ApiReply.Get(api, "/api/vms/idle")).State, Is.EqualTo("created"));
        });
    }

    /// <summary>
    /// A target that takes the handshake and then never answers holds the migration in the middle (the source waits for
    /// its answer to the final state): meanwhile every other change to the VM is refused, and once the target hangs up
    /// the VM runs on at its source.
    /// </summary>
    [Test]
    public async Task AVmBeingMigratedRefusesEveryOtherChangeUntilTheMigrationEnds()
    {
        using ServeProcess source = ServeProcess.Start();
        using HttpClient api = source.UnixClient();
        await StartSpinningAsync(api, "held");
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        Task<ApiReply> migrating = ApiReply.Post(api, "/api/vms/held/migrate", new { to = listener.LocalEndpoint.ToString() });
        using System.Net.Sockets.TcpClient accepted = await listener.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromMinutes(1));
        HybridVmm.HostOS.Migration.HandshakeResult handshake =
            await HybridVmm.HostOS.Migration.MigrationHandshake.AcceptAsync(accepted.GetStream(), key: null, TimeSpan.FromMinutes(1), CancellationToken.None);
        Assert.That(handshake.Outcome, Is.EqualTo(HybridVmm.HostOS.Migration.HandshakeOutcome.Authenticated));

        // From the handshake on, the source is migrating: nothing else may change the VM.
        var refusals = new (string What, Task<ApiReply> Reply)[]
        {
            ("pause", ApiReply.Post(api, "/api/vms/held/pause")),
            ("stop", ApiReply.Post(api, "/api/vms/held/stop")),
            ("save", ApiReply.Post(api, "/api/vms/held/save", new { path = Path.Combine(_directory, "held.snap") })),
            ("migrate", ApiReply.Post(api, "/api/vms/held/migrate", new { to = listener.LocalEndpoint.ToString() })),
            ("delete", ApiReply.Delete(api, "/api/vms/held")),
        };
        foreach ((string what, Task<ApiReply> reply) in refusals)
        {
            ApiReply answer = await reply;
            Assert.That((answer.Status, answer.Detail), Is.EqualTo((409, "'held' is being migrated; try again once that has ended")), what);
        }

        Assert.That(migrating.IsCompleted, Is.False, "the migration waits for the target");
        // Meanwhile the VM's read says where the migration has got to: its final copy has gone, the answer has not come.
        JsonElement held = await WaitForAsync(api, "held", vm => vm.TryGetProperty("migration", out JsonElement m) && m.GetProperty("phase").GetString() == "final");
        JsonElement progress = held.GetProperty("migration");
        Assert.Multiple(() =>
        {
            Assert.That(progress.GetProperty("to").GetString(), Is.EqualTo(listener.LocalEndpoint.ToString()));
            Assert.That(progress.GetProperty("round").GetInt32(), Is.GreaterThanOrEqualTo(1));
            Assert.That(progress.GetProperty("pages").GetInt64(), Is.GreaterThan(0));
            Assert.That(progress.GetProperty("bytes").GetInt64(), Is.GreaterThan(progress.GetProperty("pages").GetInt64() * 4096), "each page and its number, and the final state");
        });
        accepted.Close();
        ApiReply failed = await migrating;
        ApiReply after = await ApiReply.Get(api, "/api/vms/held");
        Assert.Multiple(() =>
        {
            Assert.That(failed.Status, Is.EqualTo(502), failed.ToString());
            Assert.That(failed.Detail, Does.EndWith("it stays on this host"));
            Assert.That(after.State, Is.EqualTo("running"), "the VM runs on at its source once the migration has failed");
            Assert.That(after.Body.TryGetProperty("migration", out _), Is.False, "no migration is under way any more");
            Assert.That(File.Exists(Path.Combine(_directory, "held.snap")), Is.False, "the refused save wrote nothing");
        });
    }

    /// <summary>On a terminal, <c>vm migrate</c> draws where the migration has got to while it waits for its answer.</summary>
    [Test]
    public async Task VmMigrateOnATerminalShowsTheMigrationsProgressWhileItWaits()
    {
        if (!File.Exists("/usr/bin/script")) Assert.Ignore("util-linux script is not installed");
        using ServeProcess source = ServeProcess.Start();
        using HttpClient api = source.UnixClient();
        await StartSpinningAsync(api, "shown");
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();

        using TerminalSession terminal = TerminalSession.StartHybridVmm($"vm migrate shown --to {listener.LocalEndpoint} --api-socket \"{source.SocketPath}\"");
        using System.Net.Sockets.TcpClient accepted = await listener.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromMinutes(1));
        await HybridVmm.HostOS.Migration.MigrationHandshake.AcceptAsync(accepted.GetStream(), key: null, TimeSpan.FromMinutes(1), CancellationToken.None);
        terminal.WaitFor(@"hybridvmm: shown: migrating to 127\.0\.0\.1:\d+: final copy, [\d,]+ pages \(\d+\.\d MiB\) sent");
        accepted.Close();
        string screen = terminal.WaitForEnd();
        Assert.Multiple(() =>
        {
            Assert.That(screen, Does.Contain("status=69"), screen);
            Assert.That(screen, Does.Contain("'shown' was not migrated to").And.Contain("it stays on this host (502 Migration failed)"));
        });
    }

    /// <summary>
    /// The two-vCPU guest of <see cref="Encapsulation.MultiprocessorSnapshotTests"/>, long enough (about 30 M instructions
    /// on each vCPU) that the API's request finds it running: its lines show how far the other vCPU has counted and its own
    /// time stamp counter, which depend on the turns the vCPUs took and the time each had reached. Its 54,004 bytes of output
    /// fit in a console's 64 KiB backlog.
    /// </summary>
    private string WriteLongTwoVcpuGuest(out CliProcess.Result whole)
    {
        string guest = Path.Combine(_directory, "smp-long.elf");
        File.WriteAllBytes(guest, Encapsulation.MultiprocessorSnapshotTests.Guest(lines: 2000));
        whole = CliProcess.Run("run", guest, "--cpus", "2");
        Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);
        return guest;
    }

    /// <summary>
    /// serve saves a VM of two vCPUs at a round barrier while it runs: the saved VM runs on to print what an uninterrupted
    /// run prints, and the snapshot, restored in another process, prints the rest of it: what <c>run --save-at</c> at the
    /// boot vCPU's instruction the save reports printed, followed by the restored run, is the uninterrupted output.
    /// </summary>
    [Test]
    public async Task ATwoVcpuGuestSavedByServeWhileItRunsContinuesExactlyWhenRestored()
    {
        string guest = WriteLongTwoVcpuGuest(out CliProcess.Result whole);
        string snapshot = Path.Combine(_directory, "smp-serve.snap"), reference = Path.Combine(_directory, "smp-run.snap");
        using ServeProcess serve = ServeProcess.Start();
        using HttpClient api = serve.UnixClient();
        Assert.That((await ApiReply.Post(api, "/api/vms", new { name = "smp", image = guest, cpus = 2, start = true })).Status, Is.EqualTo(201));
        await WaitForAsync(api, "smp", vm => vm.GetProperty("statistics").GetProperty("consoleBytes").GetInt64() > 200);

        ApiReply saved = await ApiReply.Post(api, "/api/vms/smp/save", new { path = snapshot });
        Assert.That(saved.Status, Is.EqualTo(200), saved.ToString());
        long at = saved.Body.GetProperty("instructionsRetired").GetInt64();
        await WaitForAsync(api, "smp", vm => vm.GetProperty("state").GetString() == "stopped");
        string source = (await ApiReply.Get(api, "/api/vms/smp/console")).Body.GetString()!;

        CliProcess.Result before = CliProcess.Run("run", guest, "--cpus", "2", "--save-at", at.ToString(), "--save-to", reference);
        CliProcess.Result restored = CliProcess.Run("restore", snapshot);
        Assert.Multiple(() =>
        {
            Assert.That(saved.Body.GetProperty("state").GetString(), Is.EqualTo("running"), "saved while it ran");
            Assert.That(source, Is.EqualTo(whole.Text), "the saved VM ran on as if it had not been saved");
            Assert.That(before.ExitCode, Is.Zero, before.Stderr);
            Assert.That(restored.ExitCode, Is.Zero, restored.Stderr);
            Assert.That(restored.Text, Is.Not.Empty, "saved before the guest's end");
            Assert.That(before.Text + restored.Text, Is.EqualTo(whole.Text));
        });
    }

    /// <summary>
    /// A VM of two vCPUs live-migrated between two serves while it runs: serve pauses it at a round barrier and runs its
    /// pre-copy windows from there; the target's console (the source's backlog, then the rest) is an unmigrated run's output.
    /// </summary>
    [Test]
    public async Task ATwoVcpuGuestMigratedBetweenServesWhileItRunsPrintsWhatAnUnmigratedRunPrints()
    {
        string guest = WriteLongTwoVcpuGuest(out CliProcess.Result whole);
        using Hosts hosts = await Hosts.StartAsync(_token, _token);
        Assert.That((await ApiReply.Post(hosts.SourceApi, "/api/vms", new { name = "smp", image = guest, cpus = 2, start = true })).Status, Is.EqualTo(201));
        await WaitForAsync(hosts.SourceApi, "smp", vm => vm.GetProperty("statistics").GetProperty("consoleBytes").GetInt64() > 200);

        CliProcess.Result migrated = CliProcess.Run("vm", "migrate", "smp", "--to", hosts.Endpoint, "--api-socket", hosts.Source.SocketPath);
        Assert.That(migrated.ExitCode, Is.Zero, migrated.Stderr);
        JsonElement moved = await WaitForAsync(hosts.TargetApi, "smp", vm => vm.GetProperty("state").GetString() == "stopped");
        string output = (await ApiReply.Get(hosts.TargetApi, "/api/vms/smp/console")).Body.GetString()!;
        Assert.Multiple(() =>
        {
            Assert.That(moved.GetProperty("exit").GetProperty("reason").GetString(), Is.EqualTo("guest-exit"));
            Assert.That(output, Is.EqualTo(whole.Text), "the source's backlog, then what the guest printed on the target");
        });
    }

    [Test]
    public void ServeRefusesAMigrationListenerWithoutATokenOrAnExplicitInsecure()
    {
        CliProcess.Result bare = CliProcess.Run("serve", "--migration-listen", "127.0.0.1:0");
        CliProcess.Result both = CliProcess.Run("serve", "--migration-listen", "127.0.0.1:0", "--migration-insecure", "--migration-token-file", _token);
        CliProcess.Result malformed = CliProcess.Run("serve", "--migration-listen", "here", "--migration-insecure");
        CliProcess.Result device = CliProcess.Run("serve", "--migration-listen", "127.0.0.1:0", "--migration-token-file", "/dev/zero");
        CliProcess.Result diskAlone = CliProcess.Run("serve", "--migration-disk", _token);
        CliProcess.Result diskDevice = CliProcess.Run("serve", "--migration-listen", "127.0.0.1:0", "--migration-insecure", "--migration-disk", "/dev/zero");
        Assert.Multiple(() =>
        {
            Assert.That((bare.ExitCode, bare.Stderr.Trim()), Is.EqualTo((64,
                "hybridvmm: error: --migration-listen needs --migration-token-file FILE, the token its sources also give, or --migration-insecure to take VMs from anyone who can connect")));
            Assert.That((both.ExitCode, both.Stderr.Trim()), Is.EqualTo((64, "hybridvmm: error: give --migration-token-file or --migration-insecure, not both")));
            Assert.That(malformed.ExitCode, Is.EqualTo(64), malformed.Stderr);
            Assert.That(malformed.Stderr, Does.Contain("--migration-listen 'here' is not HOST:PORT"));
            Assert.That(device.ExitCode, Is.EqualTo(66), device.Stderr);
            Assert.That(device.Stderr, Does.Contain("not a regular file"));
            Assert.That((diskAlone.ExitCode, diskAlone.Stderr.Trim()), Is.EqualTo((64, "hybridvmm: error: --migration-disk goes with --migration-listen")));
            Assert.That(diskDevice.ExitCode, Is.EqualTo(66), diskDevice.Stderr);
            Assert.That(diskDevice.Stderr, Does.Contain("not a regular file"));
        });
    }

    /// <summary>Two serve processes: a target listening for migrations with one token file, and a source with another (or the same).</summary>
    private sealed class Hosts(ServeProcess target, ServeProcess source, string endpoint) : IDisposable
    {
        public ServeProcess Target => target;

        public ServeProcess Source => source;

        public HttpClient TargetApi { get; } = target.UnixClient();

        public HttpClient SourceApi { get; } = source.UnixClient();

        public string Endpoint => endpoint;

        public static async Task<Hosts> StartAsync(string targetToken, string sourceToken)
        {
            ServeProcess target = ServeProcess.Start("--migration-listen", "127.0.0.1:0", "--migration-token-file", targetToken);
            ServeProcess source = ServeProcess.Start("--migration-token-file", sourceToken);
            using HttpClient api = target.UnixClient();
            return new Hosts(target, source, await MigrationEndpointAsync(api));
        }

        public void Dispose()
        {
            TargetApi.Dispose();
            SourceApi.Dispose();
            target.Dispose();
            source.Dispose();
        }
    }

    /// <summary>The target's migration listener as its API reports it (bound once serve has started).</summary>
    private static async Task<string> MigrationEndpointAsync(HttpClient api)
    {
        for (int i = 0; i < 600; i++)
        {
            ApiReply host = await ApiReply.Get(api, "/api/host");
            if (host.Body.TryGetProperty("migrationEndpoint", out JsonElement endpoint) && endpoint.ValueKind == JsonValueKind.String)
            {
                return endpoint.GetString()!;
            }

            await Task.Delay(100);
        }

        Assert.Fail("the target's migration listener did not bind within a minute");
        return "";
    }

    private async Task StartSpinningAsync(HttpClient api, string name)
    {
        ApiReply created = await ApiReply.Post(api, "/api/vms", new { name, image = _spinImage, memory = "4M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());
    }

    private static long Instructions(JsonElement vm) => vm.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64();

    /// <summary>Waits on the guest's own progress until <paramref name="holds"/> (bounded so that a hang fails); returns the VM then.</summary>
    private static async Task<JsonElement> WaitForAsync(HttpClient api, string name, Func<JsonElement, bool> holds)
    {
        for (int i = 0; i < 3000; i++)
        {
            ApiReply vm = await ApiReply.Get(api, $"/api/vms/{name}");
            if (vm.Status == 200 && holds(vm.Body))
            {
                return vm.Body;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"{name} did not get there within two and a half minutes");
        return default;
    }
}
