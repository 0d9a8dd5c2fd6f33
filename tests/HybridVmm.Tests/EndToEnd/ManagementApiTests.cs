using System.Text.Json;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// serve's management API (docs/serve.md), against a real serve process over its real Unix socket: the VM
/// lifecycle, the problem details of every refusal, serialized state transitions, and pause/resume determinism.
/// </summary>
public class ManagementApiTests
{
    private ServeProcess _serve = null!;
    private HttpClient _api = null!;
    private string _spinImage = "";

    [OneTimeSetUp]
    public void StartServe()
    {
        _serve = ServeProcess.Start();
        _api = _serve.UnixClient();
        _spinImage = Path.Combine(_serve.Directory, "spin.elf");
        File.WriteAllBytes(_spinImage, FlatKernel.Spin());
    }

    [OneTimeTearDown]
    public void StopServe()
    {
        _api.Dispose();
        _serve.Dispose();
    }

    [Test]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void TheSocketBelongsToTheUserAloneWithMode0600()
    {
        UnixFileMode mode = File.GetUnixFileMode(_serve.SocketPath);
        Assert.That(mode, Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite), $"socket mode {mode}");
    }

    /// <summary>Issue 14, defect 4: the API names a snapshot's disk ('diskImage'); the snapshot only refers to it.</summary>
    [Test]
    public async Task AVmFromASnapshotWithADiskTakesOnlyTheDiskTheRequestNames()
    {
        string disk = Path.Combine(_serve.Directory, "api-disk.img");
        File.WriteAllBytes(disk, new byte[64 * 512]);
        string snapshot = Path.Combine(_serve.Directory, "api-disk.snap");
        CliProcess.Result saved = CliProcess.Run("run", Repository.GuestElf("enlblk"), "--synthetic", "synthblk,synthcon", "--disk", disk,
            "--save-at", "150000", "--save-to", snapshot);
        Assert.That(saved.ExitCode, Is.Zero, saved.Stderr);

        ApiReply withoutDisk = await ApiReply.Post(_api, "/api/vms", new { name = "nodisk", snapshot });
        ApiReply device = await ApiReply.Post(_api, "/api/vms", new { name = "device", snapshot, diskImage = "/dev/zero" });
        ApiReply withDisk = await ApiReply.Post(_api, "/api/vms", new { name = "withdisk", snapshot, diskImage = disk });
        await ApiReply.Delete(_api, "/api/vms/withdisk");

        Assert.Multiple(() =>
        {
            Assert.That(withoutDisk.Status, Is.EqualTo(400), withoutDisk.ToString());
            Assert.That(withoutDisk.Detail, Does.Contain("the saved VM has a synthblk disk (saved as 'api-disk.img')"));
            Assert.That(device.Status, Is.EqualTo(400), device.ToString());
            Assert.That(device.Detail, Does.Contain("disk image '/dev/zero' is not a regular file"));
            Assert.That(withDisk.Status, Is.EqualTo(201), withDisk.ToString());
        });
    }

    [Test]
    public async Task AVmIsCreatedStartedPausedResumedStoppedListedAndDeleted()
    {
        ApiReply created = await ApiReply.Post(_api, "/api/vms", new { name = "life", image = _spinImage, memory = "4M" });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());
        Assert.That(created.State, Is.EqualTo("created"));

        Assert.That((await ApiReply.Post(_api, "/api/vms/life/start")).State, Is.EqualTo("running"));
        ApiReply paused = await ApiReply.Post(_api, "/api/vms/life/pause");
        Assert.That(paused.State, Is.EqualTo("paused"), paused.ToString());

        // Paused at an instruction boundary: nothing retires until it resumes.
        long first = (await ApiReply.Get(_api, "/api/vms/life/stats")).Body.GetProperty("instructionsRetired").GetInt64();
        long second = (await ApiReply.Get(_api, "/api/vms/life")).Body.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64();
        Assert.That(second, Is.EqualTo(first));

        Assert.That((await ApiReply.Post(_api, "/api/vms/life/resume")).State, Is.EqualTo("running"));
        ApiReply stopped = await ApiReply.Post(_api, "/api/vms/life/stop");
        Assert.Multiple(() =>
        {
            Assert.That(stopped.State, Is.EqualTo("stopped"));
            Assert.That(stopped.Body.GetProperty("exit").GetProperty("reason").GetString(), Is.EqualTo("stopped-by-root"));
            Assert.That(stopped.Body.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64(), Is.GreaterThanOrEqualTo(first));
            Assert.That(stopped.Body.GetProperty("memoryBytes").GetInt64(), Is.EqualTo(4 << 20));
            Assert.That(stopped.Body.GetProperty("devices").EnumerateArray().Select(d => d.GetString()), Does.Contain("com1"));
        });

        ApiReply list = await ApiReply.Get(_api, "/api/vms");
        Assert.That(list.Body.EnumerateArray().Where(vm => vm.GetProperty("name").GetString() == "life").Select(vm => vm.GetProperty("state").GetString()),
            Is.EqualTo(new[] { "stopped" }));

        Assert.That((await ApiReply.Delete(_api, "/api/vms/life")).Status, Is.EqualTo(200));
        Assert.That((await ApiReply.Get(_api, "/api/vms/life")).Status, Is.EqualTo(404));
    }

    /// <summary>
    /// A guest that resets the machine (the keyboard controller's reset line, or a triple fault, which a PC answers with
    /// a reset) boots again in a new partition under its name, as Hyper-V's and libvirt's do (serve's
    /// <c>OnGuestReset</c> is "reboot" by default), and its console's backlog runs on across the boots.
    /// </summary>
    [TestCase("reset", 'b', 5)]
    [TestCase("triple-fault", 't', 8)]
    public async Task AGuestThatResetsTheMachineBootsAgainAndItsConsoleRunsOn(string how, char printed, int instructionsPerBoot)
    {
        string image = Path.Combine(_serve.Directory, $"{how}.elf");
        File.WriteAllBytes(image, how == "reset" ? FlatKernel.PrintThenReset() : FlatKernel.PrintThenTripleFault());
        ApiReply created = await ApiReply.Post(_api, "/api/vms", new { name = how, image, memory = "2M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());
        try
        {
            string output = "";
            for (int poll = 0; output.Length < 3; poll++)
            {
                Assert.That(poll, Is.LessThan(300), $"the guest booted {output.Length} times");
                await Task.Delay(100);
                output = (await ApiReply.Get(_api, $"/api/vms/{how}/console")).Body.GetString()!;
            }

            ApiReply vm = await ApiReply.Get(_api, $"/api/vms/{how}");
            Assert.Multiple(() =>
            {
                Assert.That(output, Is.EqualTo(new string(printed, output.Length)), "one byte a boot, every boot's kept");
                // A VM that had run on through its resets would count the instructions of every boot.
                Assert.That(vm.Body.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64(), Is.LessThanOrEqualTo(instructionsPerBoot),
                    "each boot is a new partition, counting from zero");
                Assert.That(vm.Body.GetProperty("source").GetString(), Is.EqualTo(image));
            });
        }
        finally
        {
            await ApiReply.Delete(_api, $"/api/vms/{how}");
        }
    }

    /// <summary>With <c>OnGuestReset: "stop"</c> a guest's reset stops it, with the reason "reset" (and a triple fault's diagnostic).</summary>
    [Test]
    public async Task WithOnGuestResetStopAResetStopsTheGuest()
    {
        string config = Path.Combine(_serve.Directory, "stop-on-reset.json");
        File.WriteAllText(config, """{ "HybridVmm": { "OnGuestReset": "stop" } }""");
        using ServeProcess serve = ServeProcess.Start("--config", config);
        using HttpClient api = serve.UnixClient();
        string resetter = Path.Combine(serve.Directory, "resetter.elf"), faulter = Path.Combine(serve.Directory, "faulter.elf");
        File.WriteAllBytes(resetter, FlatKernel.PrintThenReset());
        File.WriteAllBytes(faulter, FlatKernel.PrintThenTripleFault());
        Assert.That((await ApiReply.Post(api, "/api/vms", new { name = "resetter", image = resetter, memory = "2M", start = true })).Status, Is.EqualTo(201));
        Assert.That((await ApiReply.Post(api, "/api/vms", new { name = "faulter", image = faulter, memory = "2M", start = true })).Status, Is.EqualTo(201));
        ApiReply vm, faulted;
        for (int poll = 0; (vm = await ApiReply.Get(api, "/api/vms/resetter")).State != "stopped" || (faulted = await ApiReply.Get(api, "/api/vms/faulter")).State != "stopped"; poll++)
        {
            Assert.That(poll, Is.LessThan(300), vm.ToString());
            await Task.Delay(100);
        }

        string output = (await ApiReply.Get(api, "/api/vms/resetter/console")).Body.GetString()!;
        JsonElement faultExit = faulted.Body.GetProperty("exit");
        Assert.Multiple(() =>
        {
            Assert.That(vm.Body.GetProperty("exit").GetProperty("reason").GetString(), Is.EqualTo("reset"));
            Assert.That(vm.Body.GetProperty("exit").TryGetProperty("diagnostic", out _), Is.False, "a reset asked for has no diagnostic");
            Assert.That(output, Is.EqualTo("b"));
            Assert.That(faultExit.GetProperty("reason").GetString(), Is.EqualTo("reset"));
            Assert.That(faultExit.GetProperty("diagnostic").GetString(), Does.StartWith("triple fault: #DE (vector 0)"));
        });
    }

    [Test]
    public async Task APausedAndResumedGuestPrintsWhatAnUninterruptedRunPrints()
    {
        string expected = File.ReadAllText(Path.Combine(Repository.GuestsDirectory, "bin", "cpu.qemu.txt"));
        ApiReply created = await ApiReply.Post(_api, "/api/vms", new { name = "det", image = "embedded:cpu", memory = "16M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());

        var pausedAt = new List<long>();
        for (int i = 0; i < 3; i++)
        {
            ApiReply paused = await ApiReply.Post(_api, "/api/vms/det/pause");
            Assert.That(paused.Status, Is.EqualTo(200), $"the guest ended before pause {i + 1}: {paused}");
            pausedAt.Add(paused.Body.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64());
            Assert.That((await ApiReply.Post(_api, "/api/vms/det/resume")).State, Is.EqualTo("running"));
        }

        JsonElement vm = await WaitUntilStoppedAsync("det");
        string output = (await ApiReply.Get(_api, "/api/vms/det/console")).Body.GetString()!;
        Assert.Multiple(() =>
        {
            Assert.That(pausedAt, Is.Ordered, "each pause is at or after the previous one");
            Assert.That(vm.GetProperty("exit").GetProperty("reason").GetString(), Is.EqualTo("guest-exit"));
            Assert.That(output, Is.EqualTo(expected), "output of a paused-and-resumed run");
        });
    }

    /// <summary>
    /// The kernel's partitions as the root enumerates them: the root's own first (ID 0, no guest RAM or vCPUs of its
    /// own), then one per guest with the VM the root manages in it. A VM with two vCPUs shows its application
    /// processor waiting for the start-up IPI, as a PC's does after power-on (SDM Vol. 3A, 9.4.4).
    /// </summary>
    [Test]
    public async Task ThePartitionsAreTheRootsThenOnePerGuestWithItsVmAndVcpus()
    {
        ApiReply one = await ApiReply.Post(_api, "/api/vms", new { name = "p-one", image = _spinImage, memory = "4M", start = true });
        ApiReply two = await ApiReply.Post(_api, "/api/vms", new { name = "p-two", image = _spinImage, memory = "8M", cpus = 2, start = true });
        Assert.That((one.Status, two.Status), Is.EqualTo((201, 201)), $"{one}\n{two}");
        int oneId = one.Body.GetProperty("partitionId").GetInt32(), twoId = two.Body.GetProperty("partitionId").GetInt32();

        JsonElement[] all = [.. (await ApiReply.Get(_api, "/api/partitions")).Body.EnumerateArray()];
        ApiReply single = await ApiReply.Get(_api, $"/api/partitions/{twoId}");
        ApiReply save = await ApiReply.Post(_api, "/api/vms/p-two/save", new { path = Path.Combine(_serve.Directory, "p-two.snap") });
        ApiReply migrate = await ApiReply.Post(_api, "/api/vms/p-two/migrate", new { to = "127.0.0.1:9" });
        Assert.That((await ApiReply.Delete(_api, "/api/vms/p-one")).Status, Is.EqualTo(200));
        JsonElement[] after = [.. (await ApiReply.Get(_api, "/api/partitions")).Body.EnumerateArray()];
        await ApiReply.Delete(_api, "/api/vms/p-two");

        static string[] States(JsonElement p) => [.. p.GetProperty("vcpus").EnumerateArray().Select(v => v.GetProperty("state").GetString()!)];
        JsonElement root = all[0], first = all.Single(p => p.GetProperty("id").GetInt32() == oneId);
        Assert.Multiple(() =>
        {
            Assert.That((root.GetProperty("id").GetInt32(), root.GetProperty("kind").GetString(), root.GetProperty("state").GetString()), Is.EqualTo((0, "root", "running")));
            Assert.That(root.TryGetProperty("vm", out _), Is.False, "the root manages VMs; it is none (null members are left out)");
            Assert.That(States(root), Is.Empty);
            Assert.That(all.Skip(1).Select(p => p.GetProperty("kind").GetString()).Distinct(), Is.EqualTo(new[] { "guest" }));
            Assert.That((first.GetProperty("vm").GetString(), first.GetProperty("memoryBytes").GetInt64()), Is.EqualTo(("p-one", 4L << 20)));
            Assert.That(States(first), Is.EqualTo(new[] { "runnable" }));
            Assert.That(single.Body.GetProperty("vm").GetString(), Is.EqualTo("p-two"));
            Assert.That(States(single.Body), Is.EqualTo(new[] { "runnable", "waiting-for-sipi" }), "the AP waits for INIT/SIPI");
            Assert.That(two.Body.GetProperty("vcpus").GetArrayLength(), Is.EqualTo(2), "the VM's own read lists both vCPUs");
            Assert.That(save.Status, Is.EqualTo(200), $"a VM of two vCPUs is saved: {save}");
            Assert.That(migrate.Status, Is.EqualTo(502), $"and migrated, here to where nobody listens: {migrate}");
            Assert.That(after.Select(p => p.GetProperty("id").GetInt32()), Does.Not.Contain(oneId), "a deleted VM's partition is gone");
            Assert.That(after.Select(p => p.GetProperty("id").GetInt32()), Does.Contain(twoId));
        });
    }

    /// <summary>The API takes the largest guest, 4 GiB (3 GiB of it below 4 GiB, 1 GiB above), in a serve with room for it.</summary>
    [Test]
    public async Task AGuestOf4GiBIsCreatedAndRuns()
    {
        string config = Path.Combine(_serve.Directory, "big.json");
        File.WriteAllText(config, """{ "HybridVmm": { "HostMemory": "4200M" } }""");
        using ServeProcess serve = ServeProcess.Start("--config", config);
        using HttpClient api = serve.UnixClient();
        ApiReply created = await ApiReply.Post(api, "/api/vms", new { name = "big", image = _spinImage, memory = "4G", start = true });
        ApiReply vm = await ApiReply.Get(api, "/api/vms/big");
        Assert.Multiple(() =>
        {
            Assert.That(created.Status, Is.EqualTo(201), created.ToString());
            Assert.That(vm.Body.GetProperty("memoryBytes").GetInt64(), Is.EqualTo(4L << 30), vm.ToString());
            Assert.That(vm.State, Is.EqualTo("running"), vm.ToString());
        });
    }

    [Test]
    public async Task EveryRefusalIsAProblemDetailsDocumentWithTheRightStatus()
    {
        Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = "taken", image = _spinImage, memory = "4M" })).Status, Is.EqualTo(201));
        string tooLarge = "{\"name\":\"big\",\"image\":\"" + new string('a', 100_000) + "\"}";
        using var oversized = new HttpRequestMessage(HttpMethod.Post, "/api/vms") { Content = new StringContent(tooLarge, System.Text.Encoding.UTF8, "application/json") };
        using var malformed = new HttpRequestMessage(HttpMethod.Post, "/api/vms") { Content = new StringContent("{\"name\":", System.Text.Encoding.UTF8, "application/json") };
        var cases = new (string What, Task<ApiReply> Reply, int Status, string Detail)[]
        {
            ("missing image", ApiReply.Post(_api, "/api/vms", new { name = "x", image = Path.Combine(_serve.Directory, "missing.elf") }), 404, "does not exist"),
            ("unknown embedded guest", ApiReply.Post(_api, "/api/vms", new { name = "x", image = "embedded:nope" }), 404, "no embedded guest 'nope'"),
            ("bad size", ApiReply.Post(_api, "/api/vms", new { name = "x", image = _spinImage, memory = "12Q" }), 400, "not a size"),
            ("size out of range", ApiReply.Post(_api, "/api/vms", new { name = "x", image = _spinImage, memory = "1K" }), 400, "out of range"),
            ("a page more than 4 GiB", ApiReply.Post(_api, "/api/vms", new { name = "x", image = _spinImage, memory = "4194308K" }), 400, "give 2M to 4096M"),
            ("not an image", ApiReply.Post(_api, "/api/vms", new { name = "x", image = Path.Combine(Repository.GuestsDirectory, "hello.c") }), 400, "image"),
            ("bad name", ApiReply.Post(_api, "/api/vms", new { name = "../x", image = _spinImage }), 400, "is not a VM name"),
            ("image and snapshot", ApiReply.Post(_api, "/api/vms", new { name = "x", image = _spinImage, snapshot = "s.bin" }), 400, "either"),
            ("name taken", ApiReply.Post(_api, "/api/vms", new { name = "taken", image = _spinImage, memory = "4M" }), 409, "already taken"),
            ("unknown VM", ApiReply.Post(_api, "/api/vms/nobody/pause"), 404, "no VM named 'nobody'"),
            ("resume a created VM", ApiReply.Post(_api, "/api/vms/taken/resume"), 409, "has not been started"),
            ("missing snapshot", ApiReply.Post(_api, "/api/vms", new { name = "x", snapshot = Path.Combine(_serve.Directory, "none.snap") }), 404, "does not exist"),
            ("save without a path", ApiReply.Post(_api, "/api/vms/taken/save", new { }), 400, "'path' is required"),
            ("misspelt key", ApiReply.Post(_api, "/api/vms", new { name = "x", image = _spinImage, memroy = "4M" }), 400, "unknown key 'memroy'"),
            ("no vCPU", ApiReply.Post(_api, "/api/vms", new { name = "x", image = _spinImage, memory = "4M", cpus = 0 }), 400, "'cpus' must be 1 to 64, not 0"),
            ("too many vCPUs", ApiReply.Post(_api, "/api/vms", new { name = "x", image = _spinImage, memory = "4M", cpus = 65 }), 400, "'cpus' must be 1 to 64, not 65"),
            ("vCPUs for a snapshot", ApiReply.Post(_api, "/api/vms", new { name = "x", snapshot = "s.bin", cpus = 2 }), 400, "the snapshot's memory, vCPUs"),
            ("an unknown partition", ApiReply.Get(_api, "/api/partitions/4096"), 404, "no partition with ID 4096"),
        };
        foreach ((string what, Task<ApiReply> reply, int status, string detail) in cases)
        {
            ApiReply r = await reply;
            Assert.Multiple(() =>
            {
                Assert.That(r.Status, Is.EqualTo(status), $"{what}: {r}");
                Assert.That(r.MediaType, Is.EqualTo("application/problem+json"), what);
                Assert.That(r.Detail, Does.Contain(detail), what);
                Assert.That(r.Body.GetProperty("status").GetInt32(), Is.EqualTo(status), what);
            });
        }

        using HttpResponseMessage big = await _api.SendAsync(oversized);
        using HttpResponseMessage broken = await _api.SendAsync(malformed);
        Assert.Multiple(() =>
        {
            Assert.That((int)big.StatusCode, Is.EqualTo(413));
            Assert.That(big.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            Assert.That((int)broken.StatusCode, Is.EqualTo(400));
            Assert.That(broken.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        });

        // Illegal transitions of a stopped VM, then the host still answers.
        Assert.That((await ApiReply.Post(_api, "/api/vms/taken/stop")).State, Is.EqualTo("stopped"));
        foreach (string verb in new[] { "resume", "pause", "start", "stop", "save" })
        {
            ApiReply refused = await ApiReply.Post(_api, $"/api/vms/taken/{verb}", verb == "save" ? new { path = Path.Combine(_serve.Directory, "t.snap") } : null);
            Assert.That(refused.Status, Is.EqualTo(409), $"{verb} of a stopped VM: {refused}");
            Assert.That(refused.MediaType, Is.EqualTo("application/problem+json"));
        }

        Assert.That((await ApiReply.Get(_api, "/api/host")).Status, Is.EqualTo(200));
        await ApiReply.Delete(_api, "/api/vms/taken");
    }

    [Test]
    public async Task TwoClientsPausingAndStoppingOneVmAtOnceSeeOneSerialOrder()
    {
        const int vms = 6;
        for (int i = 0; i < vms; i++)
        {
            Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = $"race{i}", image = _spinImage, memory = "4M", start = true })).Status, Is.EqualTo(201));
        }

        using HttpClient other = _serve.UnixClient();
        // Pause and stop at once: either pause came first (200, paused) and stop stopped it, or stop came first and
        // pause was refused as a transition of a stopped VM. Never a VM left paused, never a pause that says "stopped".
        ApiReply[][] pairs = await Task.WhenAll(Enumerable.Range(0, vms).Select(i =>
            Task.WhenAll(ApiReply.Post(_api, $"/api/vms/race{i}/pause"), ApiReply.Post(other, $"/api/vms/race{i}/stop"))));
        for (int i = 0; i < vms; i++)
        {
            (ApiReply pause, ApiReply stop) = (pairs[i][0], pairs[i][1]);
            Assert.That(stop.Status, Is.EqualTo(200), $"race{i} stop: {stop}");
            Assert.That(stop.State, Is.EqualTo("stopped"));
            Assert.That(pause.Status == 200 && pause.State == "paused" || pause.Status == 409 && pause.Detail.Contains("has stopped"), Is.True, $"race{i} pause: {pause}");
            Assert.That((await ApiReply.Get(_api, $"/api/vms/race{i}")).State, Is.EqualTo("stopped"));
        }

        // Two pauses at once: exactly one pauses the VM, the other finds it paused.
        for (int i = 0; i < vms; i++)
        {
            await ApiReply.Delete(_api, $"/api/vms/race{i}");
            Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = $"race{i}", image = _spinImage, memory = "4M", start = true })).Status, Is.EqualTo(201));
        }

        ApiReply[][] pauses = await Task.WhenAll(Enumerable.Range(0, vms).Select(i =>
            Task.WhenAll(ApiReply.Post(_api, $"/api/vms/race{i}/pause"), ApiReply.Post(other, $"/api/vms/race{i}/pause"))));
        for (int i = 0; i < vms; i++)
        {
            Assert.That(pauses[i].Select(p => p.Status).Order(), Is.EqualTo(new[] { 200, 409 }), $"race{i}: {pauses[i][0]} / {pauses[i][1]}");
            Assert.That(pauses[i].Single(p => p.Status == 409).Detail, Does.Contain("already paused"));
            await ApiReply.Delete(_api, $"/api/vms/race{i}");
        }
    }

    [Test]
    public async Task ASavedVmIsRestoredFromItsSnapshotAtTheSameInstruction()
    {
        Assert.That((await ApiReply.Post(_api, "/api/vms", new { name = "saver", image = _spinImage, memory = "4M", start = true })).Status, Is.EqualTo(201));
        string runningSnapshot = Path.Combine(_serve.Directory, "running.snap");
        ApiReply savedRunning = await ApiReply.Post(_api, "/api/vms/saver/save", new { path = runningSnapshot });
        Assert.That(savedRunning.Status, Is.EqualTo(200), savedRunning.ToString());
        Assert.That(savedRunning.State, Is.EqualTo("running"), "a checkpoint of a running VM leaves it running");

        ApiReply paused = await ApiReply.Post(_api, "/api/vms/saver/pause");
        string pausedSnapshot = Path.Combine(_serve.Directory, "paused.snap");
        ApiReply saved = await ApiReply.Post(_api, "/api/vms/saver/save", new { path = pausedSnapshot });
        long at = saved.Body.GetProperty("instructionsRetired").GetInt64();
        Assert.That(at, Is.EqualTo(paused.Body.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64()));

        ApiReply restored = await ApiReply.Post(_api, "/api/vms", new { name = "restored", snapshot = pausedSnapshot });
        Assert.That(restored.Status, Is.EqualTo(201), restored.ToString());
        Assert.Multiple(() =>
        {
            Assert.That(restored.State, Is.EqualTo("created"));
            Assert.That(restored.Body.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64(), Is.EqualTo(at));
            Assert.That(restored.Body.GetProperty("source").GetString(), Is.EqualTo($"snapshot:{pausedSnapshot}"));
        });
        Assert.That((await ApiReply.Post(_api, "/api/vms/restored/start")).State, Is.EqualTo("running"));
        Assert.That((await ApiReply.Post(_api, "/api/vms/restored/pause")).Body.GetProperty("statistics").GetProperty("instructionsRetired").GetInt64(),
            Is.GreaterThan(at), "the restored guest runs on from where it was saved");

        ApiReply reset = await ApiReply.Post(_api, "/api/vms/restored/reset");
        Assert.That(reset.Status, Is.EqualTo(409), "a VM from a snapshot has no image to boot again");
        ApiReply resetSaver = await ApiReply.Post(_api, "/api/vms/saver/reset");
        Assert.That(resetSaver.State, Is.EqualTo("running"), resetSaver.ToString());
        Assert.That(resetSaver.Body.GetProperty("partitionId").GetInt32(), Is.Not.EqualTo(paused.Body.GetProperty("partitionId").GetInt32()));
        await ApiReply.Delete(_api, "/api/vms/saver");
        await ApiReply.Delete(_api, "/api/vms/restored");
    }

    [Test]
    public async Task TheOpenApiDocumentDescribesTheVmOperations()
    {
        ApiReply document = await ApiReply.Get(_api, "/openapi.json");
        JsonElement paths = document.Body.GetProperty("paths");
        Assert.Multiple(() =>
        {
            Assert.That(document.Status, Is.EqualTo(200));
            Assert.That(paths.TryGetProperty("/api/vms/{name}/pause", out _), Is.True);
            Assert.That(paths.TryGetProperty("/api/host", out _), Is.True);
        });
    }

    private async Task<JsonElement> WaitUntilStoppedAsync(string name)
    {
        // Waits on the guest's own progress (bounded so that a hang fails); asserts nothing about time.
        for (int i = 0; i < 3000; i++)
        {
            ApiReply vm = await ApiReply.Get(_api, $"/api/vms/{name}");
            if (vm.State == "stopped")
            {
                return vm.Body;
            }

            await Task.Delay(100);
        }

        Assert.Fail($"{name} did not stop within five minutes");
        return default;
    }
}
