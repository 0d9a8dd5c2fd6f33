using System.Buffers.Binary;
using System.Text;
using HybridVmm.Cli.Common;
using HybridVmm.Guests.Linux;
using HybridVmm.Guests.Multiboot;
using HybridVmm.Testing;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Loader;

/// <summary>
/// The Linux 32-bit boot protocol, checked against the offsets and rules of Documentation/arch/x86/boot.rst and
/// zero-page.rst: a bzImage built here field by field, laid out, and booted by the real CLI.
/// </summary>
public class LinuxBootTests
{
    private const uint Mib = 1 << 20;

    /// <summary>A bzImage with one setup sector: boot sector signature, "HdrS", the given protocol and fields, then <paramref name="protectedMode"/>.</summary>
    internal static byte[] BzImageWith(byte[] protectedMode, ushort protocol = 0x020F, byte loadFlags = 0x01, uint initSize = 4 * Mib,
        uint prefAddress = 0x1000000, uint cmdlineSize = 2047, bool relocatable = true, uint initrdMax = 0x7FFFFFFF)
    {
        byte[] file = new byte[2 * 512 + protectedMode.Length];
        Span<byte> f = file;
        f[0x1F1] = 1;                                                   // setup_sects
        BinaryPrimitives.WriteUInt16LittleEndian(f[0x1FE..], 0xAA55);   // boot_flag
        f[0x200] = 0xEB;                                                // jump: header ends at 0x202 + f[0x201]
        f[0x201] = 0x6A;                                                // to 0x26C, as protocol 2.15 kernels do
        BinaryPrimitives.WriteUInt32LittleEndian(f[0x202..], 0x53726448); // "HdrS"
        BinaryPrimitives.WriteUInt16LittleEndian(f[0x206..], protocol);
        f[0x211] = loadFlags;
        BinaryPrimitives.WriteUInt32LittleEndian(f[0x214..], 0x100000); // code32_start
        BinaryPrimitives.WriteUInt32LittleEndian(f[0x22C..], initrdMax);
        BinaryPrimitives.WriteUInt32LittleEndian(f[0x230..], 0x1000000); // kernel_alignment
        f[0x234] = relocatable ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32LittleEndian(f[0x238..], cmdlineSize);
        BinaryPrimitives.WriteUInt64LittleEndian(f[0x258..], prefAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(f[0x260..], initSize);
        f[0x268] = 0x5A;                                                // a field inside the header (kernel_info_offset's byte): must be copied
        protectedMode.CopyTo(f[1024..]);
        return file;
    }

    private static BzImage Parse(byte[] file)
    {
        BzImage? image = BzImage.TryParse(file, out string error);
        Assert.That(image, Is.Not.Null, error);
        return image!;
    }

    private static byte[] WrittenAt(LinuxBootPlan plan, uint address) => plan.Writes.Single(w => w.GuestPhysicalAddress == address).Data;

    [Test]
    public void TheProtectedModeKernelTheZeroPageAndTheCommandLineGoWhereTheProtocolSays()
    {
        byte[] code = [0xF4, 0x90, 0x90, 0x90];
        LinuxBootPlan? plan = LinuxBoot.Layout(Parse(BzImageWith(code)), 64 * Mib, "console=ttyS0 quiet", null, out string error);
        Assert.That(plan, Is.Not.Null, error);
        byte[] zero = WrittenAt(plan!, LinuxBoot.ZeroPageAddress);
        Assert.Multiple(() =>
        {
            Assert.That(plan!.Entry, Is.EqualTo(0x100000u), "code32_start");
            Assert.That(plan.ZeroPage, Is.EqualTo(0x7000u));
            Assert.That(WrittenAt(plan, 0x100000), Is.EqualTo(code), "the part after (setup_sects + 1) * 512 bytes, at 0x100000");
            Assert.That(Encoding.ASCII.GetString(WrittenAt(plan, LinuxBoot.CommandLineAddress)), Is.EqualTo("console=ttyS0 quiet\0"));
            Assert.That(zero, Has.Length.EqualTo(4096));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(zero.AsSpan(0x202)), Is.EqualTo(0x53726448u), "setup header copied: HdrS");
            Assert.That(zero[0x268], Is.EqualTo(0x5A), "the whole header, up to the end the jump gives");
            Assert.That(zero[0x1EF], Is.Zero, "sentinel: zero, or the kernel discards the loader's fields");
            Assert.That(zero[0x210], Is.EqualTo(0xFF), "type_of_loader: undefined");
            Assert.That(zero[0x211] & 0x01, Is.EqualTo(1), "loadflags: LOADED_HIGH");
            Assert.That(zero[0x211] & 0x80, Is.Zero, "loadflags: CAN_USE_HEAP clear, no real-mode heap");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(zero.AsSpan(0x228)), Is.EqualTo(LinuxBoot.CommandLineAddress), "cmd_line_ptr");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(zero.AsSpan(0x218)), Is.Zero, "ramdisk_image: none");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(zero.AsSpan(0x1E0)), Is.EqualTo(63u * 1024), "alt_mem_k: KiB above 1 MiB");
        });
    }

    [Test]
    public void TheE820MapDescribesConventionalMemoryTheBiosHolesAndExtendedMemory()
    {
        LinuxBootPlan plan = LinuxBoot.Layout(Parse(BzImageWith([0xF4])), 128 * Mib, "", null, out _)!;
        byte[] zero = WrittenAt(plan, LinuxBoot.ZeroPageAddress);
        var entries = new List<(ulong, ulong, uint)>();
        for (int i = 0; i < zero[0x1E8]; i++)
        {
            ReadOnlySpan<byte> e = zero.AsSpan(0x2D0 + i * 20, 20);
            entries.Add((BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]), BinaryPrimitives.ReadUInt32LittleEndian(e[16..])));
        }

        Assert.That(entries, Is.EqualTo(new List<(ulong, ulong, uint)>
        {
            (0, 0x9FC00, 1),
            (0x9FC00, 0x400, 2),
            (0xF0000, 0x10000, 2),
            (0x100000, 127 * Mib, 1),
        }));
    }

    [Test]
    public void TheInitrdGoesPageAlignedToTheTopOfMemoryAndTheZeroPageNamesIt()
    {
        byte[] initrd = new byte[10_000];
        initrd[0] = 0x1F;
        LinuxBootPlan plan = LinuxBoot.Layout(Parse(BzImageWith([0xF4])), 64 * Mib, "", initrd, out string error)!;
        Assert.That(plan, Is.Not.Null, error);
        uint expected = (64 * Mib - 10_000) & ~0xFFFu;
        byte[] zero = WrittenAt(plan, LinuxBoot.ZeroPageAddress);
        Assert.Multiple(() =>
        {
            Assert.That(plan.InitrdAddress, Is.EqualTo(expected));
            Assert.That(WrittenAt(plan, expected), Is.EqualTo(initrd));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(zero.AsSpan(0x218)), Is.EqualTo(expected), "ramdisk_image");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(zero.AsSpan(0x21C)), Is.EqualTo(10_000u), "ramdisk_size");
        });
    }

    [Test]
    public void TheInitrdStaysBelowInitrdAddrMax()
    {
        LinuxBootPlan plan = LinuxBoot.Layout(Parse(BzImageWith([0xF4], initrdMax: 0x37FFFFFF)), 2000 * Mib, "", new byte[8192], out string error)!;
        Assert.That(plan, Is.Not.Null, error);
        Assert.That(plan.InitrdAddress + 8192 - 1, Is.LessThanOrEqualTo(0x37FFFFFFu));
        Assert.That(plan.InitrdAddress, Is.EqualTo(0x38000000u - 8192));
    }

    [Test]
    public void TheKernelsFootprintIsItsPreferredAddressPlusInitSize()
    {
        Assert.That(LinuxBoot.Layout(Parse(BzImageWith([0xF4])), 20 * Mib, "", null, out string error), Is.Not.Null, error);
        Assert.That(LinuxBoot.Layout(Parse(BzImageWith([0xF4])), 20 * Mib - 4096, "", null, out error), Is.Null);
        Assert.That(error, Does.Contain("needs at least 20 MiB").And.Contain("runs at 0x1000000"));
    }

    [Test]
    public void AnInitrdThatDoesNotFitAboveTheKernelIsRefused()
    {
        Assert.That(LinuxBoot.Layout(Parse(BzImageWith([0xF4])), 24 * Mib, "", new byte[5 * Mib], out string error), Is.Null);
        Assert.That(error, Does.Contain("initrd is 5 MiB"));
    }

    [Test]
    public void ACommandLineLongerThanCmdlineSizeIsRefused()
    {
        Assert.That(LinuxBoot.Layout(Parse(BzImageWith([0xF4], cmdlineSize: 8)), 64 * Mib, "123456789", null, out string error), Is.Null);
        Assert.That(error, Does.Contain("at most 8"));
        Assert.That(LinuxBoot.Layout(Parse(BzImageWith([0xF4], cmdlineSize: 8)), 64 * Mib, "12345678", null, out error), Is.Not.Null, error);
    }

    [Test]
    public void OldProtocolsZImagesAndTruncatedImagesAreRefusedWithOneLine()
    {
        Assert.Multiple(() =>
        {
            Assert.That(BzImage.TryParse(BzImageWith([0xF4], protocol: 0x0205), out string e1), Is.Null);
            Assert.That(e1, Does.Contain("2.05 is older than 2.06"));
            Assert.That(BzImage.TryParse(BzImageWith([0xF4], loadFlags: 0), out string e2), Is.Null);
            Assert.That(e2, Does.Contain("zImage"));
            Assert.That(BzImage.TryParse(BzImageWith([0xF4])[..1024], out string e3), Is.Null);
            Assert.That(e3, Does.Contain("truncated"));
            Assert.That(BzImage.HasLinuxHeader(Repository.ReadGuest("hello")), Is.False, "a Multiboot ELF is not mistaken for Linux");
        });
    }

    /// <summary>
    /// The hand-over, observed by the guest itself: a protected-mode "kernel" that checks the registers and
    /// segments the 32-bit protocol promises, finds the setup header and the command line through ESI, and prints
    /// the command line on COM1 through the real CLI.
    /// </summary>
    [Test]
    public void TheCliBootsABzImageWithTheRegistersAndZeroPageTheProtocolPromises()
    {
        byte[] code = GuestCode.Assemble(a =>
        {
            Label fail = a.CreateLabel(), print = a.CreateLabel(), done = a.CreateLabel();
            // CS = __BOOT_CS, DS = ES = SS = __BOOT_DS, EBX = EBP = EDI = 0, IF = 0, paging off.
            a.mov(eax, cs); a.cmp(eax, 0x10); a.jne(fail);
            a.mov(eax, ds); a.cmp(eax, 0x18); a.jne(fail);
            a.mov(eax, ss); a.cmp(eax, 0x18); a.jne(fail);
            a.mov(eax, es); a.cmp(eax, 0x18); a.jne(fail);
            a.or(ebx, ebp); a.or(ebx, edi); a.jnz(fail);
            // No stack is promised: like Linux's decompressor, use the zero page's scratch field (0x1E4) as one.
            a.lea(esp, __[esi + 0x1E8]);
            a.pushfd(); a.pop(eax); a.test(eax, 0x200); a.jnz(fail);
            a.mov(eax, cr0); a.test(eax, unchecked((int)0x80000000)); a.jnz(fail);
            a.cmp(__dword_ptr[esi + 0x202], 0x53726448); a.jne(fail);      // "HdrS" in the zero page
            a.mov(esi, __dword_ptr[esi + 0x228]);                           // cmd_line_ptr
            a.Label(ref print);
            a.lodsb(); a.test(al, al); a.jz(done);
            a.mov(dx, 0x3F8); a.@out(dx, al); a.jmp(print);
            a.Label(ref done);
            a.mov(al, 0); a.@out(0xF4, al); a.hlt();
            a.Label(ref fail);
            a.mov(al, 3); a.@out(0xF4, al); a.hlt();
        }, 0x100000);
        string path = Path.Combine(Path.GetTempPath(), $"bz-{Guid.NewGuid():N}");
        File.WriteAllBytes(path, BzImageWith(code));
        try
        {
            CliProcess.Result result = CliProcess.Run("run", path, "--memory", "32M", "--append", "console=ttyS0 root=/dev/ram0");
            Assert.That(result.ExitCode, Is.Zero, result.Stderr);
            Assert.That(result.Text, Is.EqualTo("console=ttyS0 root=/dev/ram0"), "Linux gets -append alone, not Multiboot's \"IMAGE ARGS\"");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void TheCliRefusesAnInitrdForAMultibootKernelAndAnInitrdLargerThanTheGuest()
    {
        CliProcess.Result multiboot = CliProcess.Run("run", Repository.GuestElf("hello"), "--initrd", Repository.GuestElf("hello"));
        Assert.That(multiboot.ExitCode, Is.EqualTo(ExitStatus.Configuration), multiboot.Stderr);
        Assert.That(multiboot.Stderr, Does.Contain("initrd is for a Linux kernel"));
        Assert.That(multiboot.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));

        // /dev/zero never ends: it is refused before it is opened, not read into the host (issue 14: "is not a regular file", 66).
        CliProcess.Result endless = CliProcess.Run("run", Repository.GuestElf("hello"), "--memory", "4M", "--initrd", "/dev/zero");
        Assert.That(endless.ExitCode, Is.EqualTo(ExitStatus.NoInput), endless.Stderr);
        Assert.That(endless.Stderr, Does.Contain("initrd '/dev/zero' is not a regular file"));
        CliProcess.Result zeroImage = CliProcess.Run("run", "/dev/zero", "--memory", "4M");
        Assert.That(zeroImage.ExitCode, Is.EqualTo(ExitStatus.NoInput), zeroImage.Stderr);

        // A regular initrd larger than the guest is still refused as too large, before it is read.
        string huge = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.initrd");
        try
        {
            using (var file = new FileStream(huge, FileMode.CreateNew))
            {
                file.SetLength(5L << 20); // sparse
            }

            CliProcess.Result larger = CliProcess.Run("run", Repository.GuestElf("hello"), "--memory", "4M", "--initrd", huge);
            Assert.That(larger.ExitCode, Is.EqualTo(ExitStatus.InvalidImage), larger.Stderr);
            Assert.That(larger.Stderr, Does.Contain($"initrd '{huge}' is too large: 5242880 bytes, more than the guest's 4 MiB"));
        }
        finally
        {
            File.Delete(huge);
        }
    }
}
