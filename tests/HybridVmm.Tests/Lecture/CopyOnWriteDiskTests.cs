using System.Security.Cryptography;
using System.Text;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.HostOS.Storage;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Lecture;

/// <summary>Copy-on-write disks for clones: an append-only overlay over a read-only base image.</summary>
public class CopyOnWriteDiskTests
{
    private string _dir = "";
    private string _base = "";

    [SetUp]
    public void CreateBase()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"hybridvmm-cow-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dir);
        _base = Path.Combine(_dir, "base.img");
        byte[] image = new byte[64 * 512];
        Encoding.ASCII.GetBytes("golden base image").CopyTo(image, 0);
        image[512] = 0xAA;
        File.WriteAllBytes(_base, image);
    }

    [TearDown]
    public void Remove() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void ReadsComeFromTheBaseUntilASectorIsWrittenAndTheBaseNeverChanges()
    {
        string before = Hash(_base);
        using (var disk = new CopyOnWriteDisk(_base, Path.Combine(_dir, "a.overlay")))
        {
            byte[] two = new byte[1024];
            disk.Read(0, two);
            Assert.That(Encoding.ASCII.GetString(two, 0, 17), Is.EqualTo("golden base image"));
            Assert.That(two[512], Is.EqualTo(0xAA));

            byte[] mine = Enumerable.Repeat((byte)0x55, 512).ToArray();
            disk.Write(1, mine);
            disk.Read(0, two);
            Assert.That(two[512], Is.EqualTo(0x55), "the overlay's sector wins");
            Assert.That(Encoding.ASCII.GetString(two, 0, 17), Is.EqualTo("golden base image"), "its neighbour still comes from the base");
            Assert.That(disk.PrivateSectors, Is.EqualTo(1));
            disk.Flush();
        }

        Assert.That(Hash(_base), Is.EqualTo(before));
    }

    [Test]
    public void FlushedWritesSurviveAReopenAndATornRecordIsDropped()
    {
        string overlay = Path.Combine(_dir, "b.overlay");
        using (var disk = new CopyOnWriteDisk(_base, overlay))
        {
            disk.Write(3, Enumerable.Repeat((byte)1, 512).ToArray());
            disk.Write(3, Enumerable.Repeat((byte)2, 512).ToArray());
            disk.Flush();
        }

        using (var stream = new FileStream(overlay, FileMode.Append))
        {
            stream.Write(new byte[100]); // a crash in the middle of the next record
        }

        using var reopened = new CopyOnWriteDisk(_base, overlay);
        byte[] sector = new byte[512];
        reopened.Read(3, sector);
        Assert.That(sector, Is.All.EqualTo(2), "the latest flushed record wins");
        Assert.That(new FileInfo(overlay).Length % (8 + 512), Is.Zero, "the torn tail was cut off");
    }

    [Test]
    public async Task ClonesOfATemplateWithADiskEachSeeTheirOwnWritesOverOneSharedBase()
    {
        string before = Hash(_base);
        var console = new CapturingConsole();
        using var system = new HybridSystem(new HypervisorOptions { HostMemoryBytes = 64L << 20 }, console, new TraceRecorder(null));
        var template = new VmConfiguration
        {
            Name = "provdisk", Image = Repository.ReadGuest("provdisk"), MemoryBytes = 8u << 20,
            SyntheticDevices = new[] { "synthblk" }, DiskImage = _base,
        };
        ProvisioningReport report = await RapidProvisioning.RunAsync(system, template, 3, console.Text, overlayDirectory: _dir);
        Assert.Multiple(() =>
        {
            Assert.That(report.Results.Select(r => r.Outcome), Is.All.EqualTo(StopReason.GuestExit));
            for (int i = 1; i <= 3; i++)
            {
                CloneResult r = report.Results[i - 1];
                Assert.That(r.Output, Does.Contain($"clone {i}: base says 'golden base image'"));
                Assert.That(r.Output, Does.Contain($"sector 1 says 'written by clone {i}'"));
                Assert.That(r.PrivateDiskSectors, Is.EqualTo(1));
                Assert.That(File.Exists(Path.Combine(_dir, $"clone{i}.overlay")), Is.True);
            }

            Assert.That(Hash(_base), Is.EqualTo(before), "the base image is read-only for every clone");
        });
    }

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));
}
