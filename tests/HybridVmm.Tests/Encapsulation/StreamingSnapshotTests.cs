using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Issue 14, defect 1: saving or restoring a large guest must cost host memory for its RAM and little more, never a
/// second copy of it. The real CLI saves and restores a 1 GiB guest whose every page is non-zero; its peak RSS
/// (<c>/usr/bin/time</c>'s maximum resident set size) is compared with a run of the same guest that saves nothing.
/// Memory only: no timing is asserted.
/// </summary>
[NonParallelizable]
public sealed class StreamingSnapshotTests
{
    private const uint MemoryBytes = 1024u << 20;

    /// <summary>What a save or a restore may add to the host's peak RSS: well under the 1 GiB a copy of the guest's RAM would cost.</summary>
    private const long ExtraBytesAllowed = 64L << 20;

    private string _directory = null!;

    [SetUp]
    public void SetUp()
    {
        if (HostRss.Unavailable is { } why)
        {
            Assert.Ignore(why);
        }

        _directory = Directory.CreateTempSubdirectory("hvstream").FullName;
    }

    [TearDown]
    public void TearDown()
    {
        if (_directory is not null && Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    /// <summary>
    /// Writes one dword into every page of RAM above 2 MiB (so no page is zero and the snapshot holds all of them),
    /// counts down 10 M loop iterations (or forever), then exits 0 through the debug-exit port.
    /// </summary>
    private static byte[] FillMemoryGuest(bool forever = false) => FlatKernel.Build(a =>
    {
        var fill = a.CreateLabel();
        var spin = a.CreateLabel();
        a.mov(edi, 0x200000);
        a.Label(ref fill);
        a.mov(__dword_ptr[edi], edi);
        a.add(edi, 4096);
        a.cmp(edi, MemoryBytes);
        a.jb(fill);
        a.mov(ecx, 10_000_000);
        a.Label(ref spin);
        if (forever)
        {
            a.jmp(spin);
        }

        a.dec(ecx);
        a.jnz(spin);
        a.xor(eax, eax);
        a.@out(0xF4, eax);
        a.hlt();
    });

    [Test]
    public void SavingAndRestoringAOneGibGuestAddsNoCopyOfItsRamToTheHostsPeakMemory()
    {
        string image = Path.Combine(_directory, "fillmem.elf");
        File.WriteAllBytes(image, FillMemoryGuest());
        string snapshot = Path.Combine(_directory, "fillmem.snap");

        (CliProcess.Result plain, long plainRss) = HostRss.Run("run", image, "--memory", "1024M");
        Assert.That(plain.ExitCode, Is.EqualTo(0), plain.Stderr);

        // The fill takes about 1 M instructions; the save comes in the countdown, with every page written.
        (CliProcess.Result saved, long saveRss) = HostRss.Run("run", image, "--memory", "1024M", "--save-at", "5000000", "--save-to", snapshot);
        Assert.That(saved.ExitCode, Is.EqualTo(0), saved.Stderr);
        Assert.That(new FileInfo(snapshot).Length, Is.GreaterThan((long)MemoryBytes - (4L << 20)), "every page but the first 2 MiB is in the snapshot");

        (CliProcess.Result restored, long restoreRss) = HostRss.Run("restore", snapshot);
        Assert.That(restored.ExitCode, Is.EqualTo(0), restored.Stderr);

        TestContext.Out.WriteLine($"peak RSS: run {plainRss >> 20} MiB, run and save {saveRss >> 20} MiB, restore {restoreRss >> 20} MiB");
        Assert.Multiple(() =>
        {
            Assert.That(saveRss - plainRss, Is.LessThan(ExtraBytesAllowed), "saving costs more than a run by this much");
            Assert.That(restoreRss - plainRss, Is.LessThan(ExtraBytesAllowed), "restoring costs more than a run by this much");
        });
    }

    /// <summary>
    /// The management API's save (and the cluster's checkpoint, which shares its path) streams as <c>run --save-to</c>
    /// does: serve's peak RSS (the kernel's VmHWM) grows by the writer's buffer, not by a copy of the guest's 1 GiB.
    /// </summary>
    [Test]
    public async Task SavingAOneGibGuestThroughTheApiAddsNoCopyOfItsRamToServesPeakMemory()
    {
        string config = Path.Combine(_directory, "serve.json");
        File.WriteAllText(config, """{ "HybridVmm": { "HostMemory": "1100M" } }""");
        string image = Path.Combine(_directory, "fillspin.elf");
        File.WriteAllBytes(image, FillMemoryGuest(forever: true));
        string snapshot = Path.Combine(_directory, "api.snap");
        using ServeProcess serve = ServeProcess.Start("--config", config);
        using HttpClient api = serve.UnixClient();
        ApiReply created = await ApiReply.Post(api, "/api/vms", new { name = "big", image, memory = "1024M", start = true });
        Assert.That(created.Status, Is.EqualTo(201), created.ToString());

        // The fill takes about 1 M instructions; wait until it is done, so that every page is in the snapshot.
        for (int poll = 0; (await ApiReply.Get(api, "/api/vms/big/stats")).Body.GetProperty("instructionsRetired").GetInt64() < 3_000_000; poll++)
        {
            Assert.That(poll, Is.LessThan(1200), "the guest did not fill its memory");
            await Task.Delay(100);
        }

        long before = HostRss.Peak(serve.ProcessId);
        ApiReply saved = await ApiReply.Post(api, "/api/vms/big/save", new { path = snapshot });
        long after = HostRss.Peak(serve.ProcessId);
        ApiReply vm = await ApiReply.Get(api, "/api/vms/big");

        TestContext.Out.WriteLine($"serve's peak RSS: {before >> 20} MiB before the save, {after >> 20} MiB after");
        Assert.Multiple(() =>
        {
            Assert.That(saved.Status, Is.EqualTo(200), saved.ToString());
            Assert.That(new FileInfo(snapshot).Length, Is.GreaterThan((long)MemoryBytes - (4L << 20)), "every page but the first 2 MiB is in the snapshot");
            Assert.That(vm.State, Is.EqualTo("running"), "the VM runs on after its save");
            Assert.That(after - before, Is.LessThan(ExtraBytesAllowed), "the save costs serve this much more memory");
        });
    }
}
