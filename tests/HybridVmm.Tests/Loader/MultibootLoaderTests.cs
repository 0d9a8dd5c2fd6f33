using System.Buffers.Binary;
using System.Text;
using HybridVmm.Guests.Multiboot;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Loader;

public class MultibootLoaderTests
{
    private static byte[] Hello => Repository.ReadGuest("hello");

    [Test]
    public void AcceptsTheHelloGuestAndEntersAtItsElfEntryPoint()
    {
        MultibootImage? image = MultibootImage.TryParse(Hello, out string error);
        Assert.That(image, Is.Not.Null, error);
        uint elfEntry = BinaryPrimitives.ReadUInt32LittleEndian(Hello.AsSpan(24));
        Assert.That(image!.Entry, Is.EqualTo(elfEntry));
        Assert.That(image.Segments.Min(s => s.PhysicalAddress), Is.EqualTo(0x100000u));
    }

    [Test]
    public void RejectsAnEmptyFile() => AssertRejected(Array.Empty<byte>(), "empty");

    [Test]
    public void RejectsAFileWithoutAMultibootHeader() =>
        AssertRejected(Encoding.ASCII.GetBytes(new string('x', 9000)), "no Multiboot header");

    [Test]
    public void RejectsAHeaderBeyondTheFirst8KiB()
    {
        byte[] file = new byte[16384];
        Hello.AsSpan(0, 4).CopyTo(file); // ELF magic, but the header is missing from the first 8 KiB
        WriteHeader(file, 8192, 0);
        AssertRejected(file, "no Multiboot header");
    }

    [Test]
    public void RejectsABadChecksum()
    {
        byte[] file = (byte[])Hello.Clone();
        int at = FindHeader(file);
        file[at + 8] ^= 1;
        AssertRejected(file, "checksum");
    }

    [Test]
    public void RejectsRequirementFlagsItDoesNotUnderstand()
    {
        byte[] file = (byte[])Hello.Clone();
        WriteHeader(file, FindHeader(file), 1u << 3);
        AssertRejected(file, "requires features");
    }

    [Test]
    public void RejectsAnElf64Kernel()
    {
        byte[] file = (byte[])Hello.Clone();
        file[4] = 2;
        AssertRejected(file, "64-bit");
    }

    [Test]
    public void RejectsANonI386Machine()
    {
        byte[] file = (byte[])Hello.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(18), 62);
        AssertRejected(file, "EM_386");
    }

    [Test]
    public void RejectsATruncatedImage()
    {
        byte[] file = Hello.AsSpan(0, Hello.Length / 2).ToArray();
        AssertRejected(file, "truncated");
    }

    [Test]
    public void RejectsATruncatedProgramHeaderTable()
    {
        byte[] file = (byte[])Hello.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(28), (uint)file.Length - 8);
        AssertRejected(file, "program header table");
    }

    [Test]
    public void RejectsAnImageThatDoesNotFitInGuestMemory()
    {
        byte[] file = FlatKernel.Wrap(new byte[8]);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(24), 0x0800_0000); // bss_end at 128 MiB
        MultibootImage? image = MultibootImage.TryParse(file, out string error);
        Assert.That(image, Is.Not.Null, error);
        Assert.That(BootInformation.Layout(image!, 4u << 20, "", out error), Is.Null);
        Assert.That(error, Does.Contain("does not fit"));
    }

    [Test]
    public void ASegmentOverTheBootInformationPageMovesThePageToTheFirstFreeOneAfterTheImage()
    {
        // kvm-unit-tests' realmode.flat loads at 0x8000-0xDA30; QEMU's loader puts its information after the kernel.
        byte[] file = FlatKernel.Wrap(new byte[8]);
        foreach (int field in new[] { 12, 16, 28 })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(field), 0x9000);
        }

        MultibootImage? image = MultibootImage.TryParse(file, out string error);
        Assert.That(image, Is.Not.Null, error);
        IReadOnlyList<GuestWrite>? writes = BootInformation.Layout(image!, 4u << 20, "moved", out uint infoAddress, out error);
        Assert.That(writes, Is.Not.Null, error);
        Assert.That(infoAddress, Is.EqualTo(0xA000u));
        byte[] page = writes!.Single(w => w.GuestPhysicalAddress == infoAddress).Data;
        uint cmdline = BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(16));
        Assert.That(cmdline - infoAddress, Is.LessThan(4096u), "the page's pointers point into the moved page");
        Assert.That(Encoding.ASCII.GetString(page, (int)(cmdline - infoAddress), 5), Is.EqualTo("moved"));
    }

    [Test]
    public void RejectsAnImageThatLeavesNoFreePageForTheBootInformation()
    {
        byte[] file = FlatKernel.Wrap(new byte[8]);
        foreach (int field in new[] { 12, 16, 28 })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(field), 0x9000);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(24), 0x9F000); // bss up to 0x9F000: no page left below 0x9FC00
        MultibootImage? image = MultibootImage.TryParse(file, out string error);
        Assert.That(image, Is.Not.Null, error);
        Assert.That(BootInformation.Layout(image!, 4u << 20, "", out error), Is.Null);
        Assert.That(error, Does.Contain("boot information"));
    }

    [Test]
    public void BootInformationCarriesMemoryCommandLineMapAndLoaderName()
    {
        MultibootImage image = MultibootImage.TryParse(Hello, out _)!;
        IReadOnlyList<GuestWrite> writes = BootInformation.Layout(image, 64u << 20, "console=com1 quiet", out string error)!;
        Assert.That(writes, Is.Not.Null, error);
        byte[] page = writes.Single(w => w.GuestPhysicalAddress == BootInformation.InfoAddress).Data;
        uint U32(uint gpa) => BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan((int)(gpa - BootInformation.InfoAddress)));
        string Str(uint gpa)
        {
            int start = (int)(gpa - BootInformation.InfoAddress);
            return Encoding.ASCII.GetString(page, start, Array.IndexOf(page, (byte)0, start) - start);
        }

        uint info = BootInformation.InfoAddress;
        uint flags = U32(info);
        Assert.Multiple(() =>
        {
            Assert.That(flags & 0x245, Is.EqualTo(0x245u), "mem, cmdline, mmap and boot_loader_name flags");
            Assert.That(U32(info + 4), Is.EqualTo(639u), "mem_lower in KiB");
            Assert.That(U32(info + 8), Is.EqualTo(63u * 1024), "mem_upper in KiB");
            Assert.That(Str(U32(info + 16)), Is.EqualTo("console=com1 quiet"));
            Assert.That(Str(U32(info + 64)), Is.EqualTo("HybridVmm"));
            Assert.That(U32(info + 44), Is.EqualTo(72u), "three 24-byte mmap entries");
            uint mmap = U32(info + 48);
            Assert.That(U32(mmap + 24 * 2 + 20), Is.EqualTo(1u), "high memory is available RAM");
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan((int)(mmap - info + 48 + 4))), Is.EqualTo(0x100000UL));
        });
    }

    [Test]
    public void AnEmptyCommandLineIsAnEmptyStringNotANullPointer()
    {
        MultibootImage image = MultibootImage.TryParse(Hello, out _)!;
        byte[] page = BootInformation.Layout(image, 4u << 20, "", out _)!.Single(w => w.GuestPhysicalAddress == BootInformation.InfoAddress).Data;
        uint cmdline = BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(16));
        Assert.That(cmdline, Is.Not.Zero);
        Assert.That(page[cmdline - BootInformation.InfoAddress], Is.Zero);
    }

    private static void AssertRejected(byte[] file, string reason)
    {
        MultibootImage? image = MultibootImage.TryParse(file, out string error);
        Assert.That(image, Is.Null);
        Assert.That(error, Does.Contain(reason));
    }

    private static int FindHeader(byte[] file)
    {
        for (int i = 0; i < 8192; i += 4)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(i)) == MultibootHeader.Magic)
            {
                return i;
            }
        }

        throw new AssertionException("no header");
    }

    private static void WriteHeader(byte[] file, int at, uint flags)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at), MultibootHeader.Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at + 4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at + 8), unchecked(0u - MultibootHeader.Magic - flags));
    }
}
