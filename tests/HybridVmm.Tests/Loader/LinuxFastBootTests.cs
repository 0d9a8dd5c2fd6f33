using System.Buffers.Binary;
using System.IO.Compression;
using HybridVmm.Cli.Common;
using HybridVmm.Guests.Linux;
using HybridVmm.Guests.Multiboot;
using HybridVmm.HostOS;
using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Loader;

/// <summary>
/// The fast Linux boot (docs/guest-platform.md, "Fast boot"): a bzImage's payload unpacked on the host and its vmlinux
/// entered past the decompressor, and a vmlinux ELF given as the image. The kernel here is tiny-vmlinux.xz
/// (Fixtures/make-tiny-vmlinux.py): an XZ payload made as Linux's build makes one, whose code exits with the zero
/// page's type_of_loader (255) when ESI points at the zero page.
/// </summary>
public class LinuxFastBootTests
{
    private const uint Mib = 1 << 20;

    /// <summary>What an i386 bzImage's 2.15 header says of a kernel this small: it runs at 16 MiB and needs 8 KiB there.</summary>
    private const uint TinyInitSize = 0x2000;

    internal static byte[] TinyPayload => File.ReadAllBytes(Path.Combine(Repository.Root, "tests", "HybridVmm.Tests", "Loader", "Fixtures", "tiny-vmlinux.xz"));

    /// <summary>A bzImage whose protected-mode code is a stand-in decompressor (HLT) followed by <paramref name="payload"/>.</summary>
    internal static byte[] BzImageWithPayload(byte[] payload, uint initSize = TinyInitSize)
    {
        const int payloadOffset = 0x40;
        byte[] protectedMode = new byte[payloadOffset + payload.Length];
        protectedMode[0] = 0xF4;
        payload.CopyTo(protectedMode, payloadOffset);
        byte[] file = LinuxBootTests.BzImageWith(protectedMode, initSize: initSize);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x248), payloadOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x24C), (uint)payload.Length);
        return file;
    }

    private static BzImage Parse(byte[] file) => BzImage.TryParse(file, out string error) ?? throw new AssertionException(error);

    internal static byte[] TinyVmlinux() => KernelPayload.TryUnpack(Parse(BzImageWithPayload(TinyPayload)), 64 * Mib, out string error) ?? throw new AssertionException(error);

    private static string? Refusal(byte[] bzImage, uint memory = 64 * Mib) =>
        KernelPayload.TryUnpack(Parse(bzImage), memory, out string error) is null ? error : null;

    private static byte[] WrittenAt(LinuxBootPlan plan, uint address) => plan.Writes.Single(w => w.GuestPhysicalAddress == address).Data;

    [Test]
    public void TheXzPayloadUnpacksToTheVmlinuxWhoseSegmentsGoToTheirPhysicalAddresses()
    {
        byte[] vmlinux = TinyVmlinux();
        Assert.That(Vmlinux.IsLinuxElf(vmlinux), Is.True);
        Vmlinux kernel = Vmlinux.TryParse(vmlinux, out string error) ?? throw new AssertionException(error);
        byte[] initrd = new byte[3 * 4096];
        BzImage image = Parse(BzImageWithPayload(TinyPayload));
        LinuxBootPlan fast = LinuxBoot.Layout(kernel, image, 64 * Mib, "console=ttyS0", initrd, acpiRsdp: 0xF0000, out error) ?? throw new AssertionException(error);
        LinuxBootPlan full = LinuxBoot.Layout(image, 64 * Mib, "console=ttyS0", initrd, out error) ?? throw new AssertionException(error);
        byte[] fastZero = WrittenAt(fast, LinuxBoot.ZeroPageAddress), fullZero = WrittenAt(full, LinuxBoot.ZeroPageAddress);
        Assert.Multiple(() =>
        {
            Assert.That(fast.Entry, Is.EqualTo(0x1000000), "the ELF entry, startup_32's physical address");
            Assert.That(WrittenAt(fast, 0x1000000), Is.EqualTo(new byte[] { 0x8A, 0x86, 0x10, 0x02, 0x00, 0x00, 0xE6, 0xF4, 0xF4 }), "the segment's file bytes");
            Assert.That(fast.Writes.Any(w => w.GuestPhysicalAddress == LinuxBoot.KernelLoadAddress), Is.False, "nothing of the bzImage at 1 MiB");
            Assert.That(fast.InitrdAddress, Is.EqualTo(full.InitrdAddress), "the initrd where the decompressor's boot puts it");
            Assert.That(fast.KernelEnd, Is.EqualTo(full.KernelEnd));
            Assert.That(WrittenAt(fast, LinuxBoot.CommandLineAddress), Is.EqualTo(WrittenAt(full, LinuxBoot.CommandLineAddress)));
            // The same zero page, but for acpi_rsdp_addr, which the decompressor finds and records.
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(fastZero.AsSpan(0x070)), Is.EqualTo(0xF0000UL), "acpi_rsdp_addr");
            Assert.That(fastZero.AsSpan(0x078).ToArray(), Is.EqualTo(fullZero.AsSpan(0x078).ToArray()));
            Assert.That(fastZero.AsSpan(0, 0x070).ToArray(), Is.EqualTo(fullZero.AsSpan(0, 0x070).ToArray()));
        });
    }

    [Test]
    public void AGzipPayloadUnpacksToo()
    {
        using var gzip = new MemoryStream();
        using (var stream = new GZipStream(gzip, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            stream.Write(TinyVmlinux());
        }

        byte[] unpacked = KernelPayload.TryUnpack(Parse(BzImageWithPayload(gzip.ToArray())), 64 * Mib, out string error) ?? throw new AssertionException(error);
        Assert.That(unpacked, Is.EqualTo(TinyVmlinux()));
    }

    [Test]
    public void CorruptTruncatedOversizedAndUnknownPayloadsAreRefusedWithOneLine()
    {
        byte[] payload = TinyPayload;
        byte[] corrupt = (byte[])payload.Clone();
        corrupt[40] ^= 0x55; // inside the LZMA2 data
        byte[] truncated = [.. payload.AsSpan(0, payload.Length / 2), .. payload.AsSpan(payload.Length - 4)];
        byte[] zstd = [0x28, 0xB5, 0x2F, 0xFD, .. payload.AsSpan(4)];
        byte[] bigger = (byte[])payload.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(bigger.AsSpan(bigger.Length - 4), TinyInitSize + 1);
        byte[] shorter = (byte[])payload.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(shorter.AsSpan(shorter.Length - 4), 100);
        byte[] hugeDictionary = (byte[])payload.Clone();
        hugeDictionary[12 + 6] = 40; // the LZMA2 property byte after the x86 filter: a 4 GiB dictionary
        byte[] outside = BzImageWithPayload(payload);
        BinaryPrimitives.WriteUInt32LittleEndian(outside.AsSpan(0x24C), 0x10000);

        var refusals = new Dictionary<string, string?>
        {
            ["corrupt"] = Refusal(BzImageWithPayload(corrupt)),
            ["truncated"] = Refusal(BzImageWithPayload(truncated)),
            ["zstd"] = Refusal(BzImageWithPayload(zstd)),
            ["beyond init_size"] = Refusal(BzImageWithPayload(bigger)),
            ["beyond memory"] = Refusal(BzImageWithPayload(payload, initSize: 16 * Mib), memory: 4096),
            ["more than declared"] = Refusal(BzImageWithPayload(shorter)),
            ["dictionary"] = Refusal(BzImageWithPayload(hugeDictionary)),
            ["outside the file"] = Refusal(outside),
        };
        Assert.Multiple(() =>
        {
            foreach ((string what, string? refusal) in refusals)
            {
                Assert.That(refusal, Is.Not.Null.And.Not.Empty.And.Not.Contains("\n"), what);
            }

            Assert.That(refusals["corrupt"], Does.StartWith("the XZ payload is corrupt"));
            Assert.That(refusals["zstd"], Is.EqualTo("the kernel's payload is zstd-compressed; the fast boot unpacks XZ and gzip (boot it with --boot decompressor)"));
            Assert.That(refusals["beyond init_size"], Does.Contain("more than the kernel's init_size (8192)"));
            Assert.That(refusals["beyond memory"], Does.Contain("more than the guest's memory (4096 bytes)"));
            Assert.That(refusals["more than declared"], Is.EqualTo("the XZ payload unpacks to more than the 100 bytes it declares"));
            Assert.That(refusals["dictionary"], Does.Contain("dictionary; at most 64 MiB is taken"));
            Assert.That(refusals["outside the file"], Does.Contain("is not inside the"));
        });
    }

    /// <summary>The whole path through the real CLI: the hand-over the kernel sees, and a bad payload's exit status and message.</summary>
    [Test]
    public void TheCliBootsTheUnpackedKernelWithTheZeroPageInEsiAndRefusesACorruptPayloadWithStatus65()
    {
        string dir = Directory.CreateTempSubdirectory("hvfastboot").FullName;
        try
        {
            string good = Path.Combine(dir, "bzImage"), bad = Path.Combine(dir, "corrupt"), elf = Path.Combine(dir, "vmlinux");
            File.WriteAllBytes(good, BzImageWithPayload(TinyPayload));
            byte[] corrupt = TinyPayload;
            corrupt[40] ^= 0x55;
            File.WriteAllBytes(bad, BzImageWithPayload(corrupt));
            File.WriteAllBytes(elf, TinyVmlinux());

            CliProcess.Result fast = CliProcess.Run("run", good, "--boot", "fast", "--memory", "32M");
            CliProcess.Result decompressor = CliProcess.Run("run", good, "--memory", "32M", "--max-instructions", "1000");
            CliProcess.Result vmlinux = CliProcess.Run("run", elf, "--memory", "32M");
            CliProcess.Result small = CliProcess.Run("run", elf, "--memory", "16M");
            CliProcess.Result refused = CliProcess.Run("run", bad, "--boot", "fast", "--memory", "32M");
            CliProcess.Result unknown = CliProcess.Run("run", good, "--boot", "quick");
            Assert.Multiple(() =>
            {
                Assert.That(fast.ExitCode, Is.EqualTo(255), "type_of_loader read through ESI: " + fast.Stderr);
                Assert.That(decompressor.ExitCode, Is.EqualTo(ExitStatus.GuestHalted), "by default the bzImage's own code (here a HLT) runs: " + decompressor.Stderr);
                Assert.That(vmlinux.ExitCode, Is.EqualTo(255), "a vmlinux ELF boots as it is: " + vmlinux.Stderr);
                Assert.That(small.ExitCode, Is.EqualTo(ExitStatus.InvalidImage), small.Stderr);
                Assert.That(small.Stderr, Does.Contain("does not fit in 16 MiB of guest memory"));
                Assert.That(refused.ExitCode, Is.EqualTo(ExitStatus.InvalidImage), refused.Stderr);
                Assert.That(refused.Stderr, Does.StartWith("hybridvmm: error: ").And.Contain("the XZ payload is corrupt"));
                Assert.That(refused.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
                Assert.That(unknown.ExitCode, Is.EqualTo(ExitStatus.Usage), unknown.Stderr);
            });
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void AMultibootElfIsNeverTakenForAVmlinux()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Vmlinux.IsLinuxElf(Repository.ReadGuest("hello")), Is.False);
            Assert.That(RootPartition.IsLinux(Repository.ReadGuest("hello")), Is.False);
            Assert.That(RootPartition.IsLinux(TinyVmlinux()), Is.True);
        });
    }

    /// <summary>Debian's own kernel (when fetched): its XZ payload unpacks to the vmlinux the decompressor would place at 16 MiB.</summary>
    [Test]
    public void DebiansPayloadUnpacksToAVmlinuxAt16MiBWithItsInitrdWhereTheDecompressorsBootPutsIt()
    {
        string path = Path.Combine(Repository.Root, "samples", "linux", "debian", "vmlinuz");
        if (!File.Exists(path))
        {
            Assert.Ignore($"{path} is missing: run samples/linux/fetch-debian.sh");
        }

        BzImage image = Parse(File.ReadAllBytes(path));
        byte[] unpacked = KernelPayload.TryUnpack(image, 128 * Mib, out string error) ?? throw new AssertionException(error);
        Vmlinux kernel = Vmlinux.TryParse(unpacked, out error) ?? throw new AssertionException(error);
        byte[] initrd = new byte[1 << 20];
        LinuxBootPlan fast = LinuxBoot.Layout(kernel, image, 128 * Mib, "console=ttyS0", initrd, 0, out error) ?? throw new AssertionException(error);
        LinuxBootPlan full = LinuxBoot.Layout(image, 128 * Mib, "console=ttyS0", initrd, out error) ?? throw new AssertionException(error);
        Assert.Multiple(() =>
        {
            Assert.That(KernelPayload.Format(image.Payload), Is.EqualTo("XZ"));
            Assert.That(Vmlinux.IsLinuxElf(unpacked), Is.True);
            Assert.That(kernel.Entry, Is.EqualTo(0x1000000), "phys_startup_32 at LOAD_PHYSICAL_ADDR");
            Assert.That(kernel.Start, Is.EqualTo((uint)image.PreferredAddress));
            Assert.That(kernel.End, Is.LessThanOrEqualTo(image.PreferredAddress + image.InitSize), "the kernel fits in init_size");
            Assert.That(fast.InitrdAddress, Is.EqualTo(full.InitrdAddress));
            Assert.That(LinuxBoot.Layout(kernel, image, 24 * Mib, "", null, 0, out error), Is.Null, "a guest too small for the segments");
            Assert.That(error, Does.Contain("does not fit in 24 MiB"));
        });
    }
}
