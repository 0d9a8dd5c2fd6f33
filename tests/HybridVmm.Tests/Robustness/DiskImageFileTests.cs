using System.Diagnostics;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Robustness;

/// <summary>
/// Issue 14: a VM's disk image must be a regular file. The root partition itself refuses a device, a FIFO or a
/// directory before it opens it (a FIFO would block the host until a writer came, /dev/zero reads without end),
/// whoever built the configuration: the CLI's verbs, serve's configuration, the API, an HA restart.
/// </summary>
public class DiskImageFileTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-diskfile-{Guid.NewGuid():N}"));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private static VmConfiguration WithDisk(string disk) => new()
    {
        Name = "disk", Image = Repository.ReadGuest("enlblk"), MemoryBytes = 4u << 20, SyntheticDevices = ["synthblk"], DiskImage = disk,
    };

    private string Fifo()
    {
        string path = Path.Combine(_dir, "disk.fifo");
        using Process mkfifo = Process.Start("mkfifo", path);
        mkfifo.WaitForExit();
        Assert.That(mkfifo.ExitCode, Is.Zero, "mkfifo");
        return path;
    }

    [Test]
    public void PrepareRefusesADeviceAsADiskImage() =>
        AssertNoInput(WithDisk("/dev/zero"), "disk image '/dev/zero' is not a regular file");

    [Test]
    public void PrepareRefusesAFifoAsADiskImageWithoutOpeningIt()
    {
        string fifo = Fifo();
        AssertNoInput(WithDisk(fifo), $"disk image '{fifo}' is not a regular file");
    }

    [Test]
    public void PrepareRefusesADirectoryAsADiskImage() =>
        AssertNoInput(WithDisk(_dir), $"disk image '{_dir}' is a directory");

    [Test]
    public void PrepareRefusesAMissingDiskImage() =>
        AssertNoInput(WithDisk(Path.Combine(_dir, "none.img")), $"cannot read disk image '{Path.Combine(_dir, "none.img")}': no such file");

    [Test]
    public void PrepareAcceptsARegularDiskImageOfWholeSectors()
    {
        string disk = Path.Combine(_dir, "disk.img");
        File.WriteAllBytes(disk, new byte[64 * 512]);
        Assert.That(RootPartition.Prepare(WithDisk(disk), out VmCreationError? error), Is.Not.Null, error?.Message);
    }

    [Test]
    public void PrepareRefusesADiskImageOfPartSectors()
    {
        string disk = Path.Combine(_dir, "odd.img");
        File.WriteAllBytes(disk, new byte[1000]);
        Assert.That(RootPartition.Prepare(WithDisk(disk), out VmCreationError? error), Is.Null);
        Assert.That(error!.Kind, Is.EqualTo(VmCreationErrorKind.InvalidConfiguration));
        Assert.That(error.Message, Is.EqualTo($"disk image '{disk}' holds 1000 bytes, not a multiple of 512"));
    }

    private static void AssertNoInput(VmConfiguration config, string message)
    {
        Assert.That(RootPartition.Prepare(config, out VmCreationError? error), Is.Null);
        Assert.That(error!.Kind, Is.EqualTo(VmCreationErrorKind.NoInput));
        Assert.That(error.Message, Is.EqualTo(message));
        Assert.That(Cli.Common.ExitStatus.OfCreationError(error.Kind), Is.EqualTo(Cli.Common.ExitStatus.NoInput));
    }
}
