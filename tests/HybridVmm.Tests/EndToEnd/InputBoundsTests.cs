using System.Diagnostics;
using HybridVmm.Cli.Common;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.EndToEnd;

/// <summary>
/// Issue 14, defects 2, 11, 15 and 16: every file the host reads is a regular file of bounded size, and every refusal
/// is one line with the status docs/exit-codes.md gives it. A device such as /dev/zero is refused before it is
/// opened, so these runs cost no memory and end at once instead of reading without bound.
/// </summary>
public class InputBoundsTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-bounds-{Guid.NewGuid():N}"));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [TestCase("run")]
    [TestCase("restore")]
    public void ADeviceIsNotARegularFile(string verb) =>
        AssertRefused(CliProcess.Run(verb, "/dev/zero"), ExitStatus.NoInput, "is not a regular file");

    [TestCase("run")]
    [TestCase("restore")]
    public void ADirectoryIsReportedAsADirectory(string verb) =>
        AssertRefused(CliProcess.Run(verb, _dir), ExitStatus.NoInput, $"'{_dir}' is a directory");

    [TestCase("run")]
    [TestCase("restore")]
    public void AFifoIsRefusedWithoutWaitingForAWriter(string verb)
    {
        string fifo = Path.Combine(_dir, "fifo");
        Process.Start("mkfifo", fifo)!.WaitForExit();
        AssertRefused(CliProcess.Run(verb, fifo), ExitStatus.NoInput, $"'{fifo}' is not a regular file");
    }

    [TestCase("clone")]
    [TestCase("bench")]
    [TestCase("compare-types")]
    public void AGuestFileThatIsADeviceIsRefusedByEveryCommandThatTakesOne(string verb) =>
        AssertRefused(CliProcess.Run(verb, "--guest", "/dev/zero"), ExitStatus.NoInput, "image '/dev/zero' is not a regular file");

    [Test]
    public void CompareTypesRefusesAnImageThatIsNotAKernelWithOneLine()
    {
        string junk = Path.Combine(_dir, "junk.elf");
        File.WriteAllText(junk, "this is not a kernel");
        AssertRefused(CliProcess.Run("compare-types", "--guest", junk), ExitStatus.InvalidImage, "not a Multiboot v1 kernel");
    }

    [Test]
    public void AnInitrdThatIsADeviceIsRefused() =>
        AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--initrd", "/dev/zero"), ExitStatus.NoInput, "initrd '/dev/zero' is not a regular file");

    [Test]
    public void AnImageLargerThanTheGuestsMemoryIsTooLargeBeforeItIsRead()
    {
        string image = Path.Combine(_dir, "huge.elf");
        using (var file = new FileStream(image, FileMode.CreateNew))
        {
            file.SetLength(65L << 20); // sparse: costs no disk
        }

        AssertRefused(CliProcess.Run("run", image, "--memory", "64M"), ExitStatus.InvalidImage, "is too large");
    }

    [Test]
    public void ADirectoryAsTheServeConfigurationIsADirectory() =>
        AssertRefused(CliProcess.Run("serve", "--config", _dir), ExitStatus.NoInput, $"configuration file '{_dir}' is a directory");

    [Test]
    public void ServeRefusesADeviceAsAnImageBeforeItStarts()
    {
        CliProcess.Result result = Serve("""{ "HybridVmm": { "Vms": [ { "Name": "z", "Image": "/dev/zero" } ] } }""");
        AssertRefused(result, ExitStatus.Configuration, "Vms:0:Image: file '/dev/zero' is not a regular file");
        Assert.That(result.Stderr, Does.Not.Contain("started"));
    }

    [Test]
    public void ServeChecksThatEveryImageLoadsBeforeItStarts()
    {
        File.WriteAllText(Path.Combine(_dir, "junk.elf"), "this is not a kernel");
        CliProcess.Result result = Serve("""
            { "HybridVmm": { "ExitWhenGuestsStop": true, "Vms": [
                { "Name": "good", "Image": "embedded:hello", "Memory": "8M" },
                { "Name": "bad", "Image": "junk.elf", "Memory": "8M" } ] } }
            """);
        AssertRefused(result, ExitStatus.InvalidImage, "VM 'bad': ");
        Assert.That(result.Stderr, Does.Contain("not a Multiboot v1 kernel").And.Not.Contain("Hypervisor kernel started"));
        Assert.That(result.Text, Is.Empty, "no guest ran");
    }

    [Test]
    public void AnUnknownSyntheticDeviceIsAUsageError() =>
        AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--synthetic", "bogus"), ExitStatus.Usage, "unknown synthetic device 'bogus'");

    [Test]
    public void SynthblkWithoutADiskIsAUsageError() =>
        AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--synthetic", "synthblk"), ExitStatus.Usage, "--synthetic synthblk needs --disk FILE");

    [Test]
    public void ACommandLineLongerThanTheBootInformationPageHoldsIsAnInvalidImageForThatKernel() =>
        AssertRefused(CliProcess.Run("run", Repository.GuestElf("hello"), "--append", new string('a', 5000)), ExitStatus.InvalidImage, "at most 3583 fit");

    [Test]
    public void RunNamesAVmFromAFileNameWithAnEscapeSequenceInPrintableCharacters()
    {
        string image = Path.Combine(_dir, "evil\u001b[31m\nname.elf");
        File.Copy(Repository.GuestElf("hello"), image);
        string trace = Path.Combine(_dir, "t.trace");
        CliProcess.Result result = CliProcess.Run("run", image, "--trace", trace);
        Assert.That(result.ExitCode, Is.Zero, result.Stderr);
        Assert.That(File.ReadAllText(trace), Does.Contain("evil?[31m?name/0").And.Not.Contain("\u001b"));
    }

    [Test]
    public void AReceiveHostMemoryOutOfRangeIsAUsageError() =>
        AssertRefused(CliProcess.Run("receive", "--host-memory", "100G"), ExitStatus.Usage, "--host-memory 100G is out of range");

    [Test]
    public void ServeNamesAreUniqueIgnoringCase()
    {
        CliProcess.Result result = Serve("""{ "HybridVmm": { "Vms": [ { "Name": "web", "Image": "embedded:hello" }, { "Name": "WEB", "Image": "embedded:hello" } ] } }""");
        AssertRefused(result, ExitStatus.Configuration, "Vms:1:Name 'WEB' is used twice");
    }

    [TestCase("two\\nlines")]
    [TestCase("red\\u001b[31m")]
    public void ServeRefusesNamesWithControlCharacters(string jsonName)
    {
        CliProcess.Result result = Serve($$"""{ "HybridVmm": { "Vms": [ { "Name": "{{jsonName}}", "Image": "embedded:hello" } ] } }""");
        AssertRefused(result, ExitStatus.Configuration, "holds a control character");
    }

    [Test]
    public void ServeRefusesTwoVmsWritingOneTraceFile()
    {
        CliProcess.Result result = Serve("""
            { "HybridVmm": { "Trace": "all.trace", "Vms": [
                { "Name": "a", "Image": "embedded:hello", "Trace": "a.trace" },
                { "Name": "b", "Image": "embedded:hello", "Trace": "./all.trace" } ] } }
            """);
        AssertRefused(result, ExitStatus.Configuration, "Vms:1:Trace: './all.trace' is also the file of Trace");
        Assert.That(File.Exists(Path.Combine(_dir, "all.trace")), Is.False, "refused before any trace is created");
    }

    [Test]
    public void ServeRefusesAVmTraceItCannotCreateBeforeItStarts()
    {
        CliProcess.Result result = Serve("""{ "HybridVmm": { "Vms": [ { "Name": "a", "Image": "embedded:hello", "Trace": "no/such/dir/a.trace" } ] } }""");
        AssertRefused(result, ExitStatus.Configuration, "Vms:0:Trace: the directory of 'no/such/dir/a.trace' does not exist");
    }

    [Test]
    public void AnUnknownKeyIsNamedWithItsVm()
    {
        CliProcess.Result result = Serve("""{ "HybridVmm": { "Vms": [ { "Name": "ok", "Image": "embedded:hello" }, { "Name": "typo", "Image": "embedded:hello", "Memroy": "16M" } ] } }""");
        AssertRefused(result, ExitStatus.Configuration, "Vms:1 (VM 'typo'): unknown key 'Memroy' (known: Name, Image, Memory,");
    }

    private CliProcess.Result Serve(string json)
    {
        string path = Path.Combine(_dir, "vms.json");
        File.WriteAllText(path, json);
        return CliProcess.RunIn(_dir, "serve", "--config", path);
    }

    /// <summary>The status, and one line of stderr that says what is wrong: never a stack trace.</summary>
    internal static void AssertRefused(CliProcess.Result result, int status, string message)
    {
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(status), result.Stderr);
            Assert.That(result.Stderr, Does.StartWith("hybridvmm: error: ").And.Contain(message));
            Assert.That(result.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), result.Stderr);
            Assert.That(result.Stderr, Does.Not.Contain("   at "));
        });
    }
}
