using System.Globalization;
using System.Text.RegularExpressions;
using HybridVmm.Guests;
using HybridVmm.Guests.Linux;
using HybridVmm.Hardware.Memory;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Loader;

/// <summary>
/// The loaders' memory maps (<see cref="PcRamLayout"/>, in Guests, which cannot reference Hardware) and the machine's
/// RAM (<see cref="GuestRam"/>) follow one rule: a map must never list RAM the machine does not have, or miss RAM it has.
/// Where the rule itself comes from QEMU is checked by <c>OnDemandMemoryTests</c> (the bootinfo guest's map at 3583M,
/// 3584M and 4G against QEMU's).
/// </summary>
public class RamLayoutAgreementTests
{
    [TestCase(2UL << 20)]
    [TestCase(64UL << 20)]
    [TestCase((3583UL << 20) + 4096 * 255)]
    [TestCase(3584UL << 20)]
    [TestCase((3584UL << 20) + 4096)]
    [TestCase(4096UL << 20)]
    public void TheLoadersMapAndTheMachinesRamAgree(ulong size)
    {
        Assert.Multiple(() =>
        {
            Assert.That(PcRamLayout.BelowFourGiB(size), Is.EqualTo(GuestRam.BelowFourGiB(size)));
            Assert.That(PcRamLayout.AboveFourGiB(size), Is.EqualTo(GuestRam.AboveFourGiB(size)));
            Assert.That(PcRamLayout.HighBase, Is.EqualTo(GuestRam.HighBase));
            Assert.That(GuestRam.BelowFourGiB(size) + GuestRam.AboveFourGiB(size), Is.EqualTo(size), "no RAM is lost in the hole");
        });
    }

    /// <summary>
    /// The Linux zero page's e820 table lists the RAM above 4 GiB as QEMU's firmware does: QEMU's Multiboot memory map is
    /// SeaBIOS's e820 (the <c>bootinfo</c> guest prints it), and its ranges above 4 GiB at <c>-m 3584M</c> and <c>-m 4G</c>
    /// are the table's, entry for entry.
    /// </summary>
    [TestCase("3584M", 3584UL << 20)]
    [TestCase("4G", 4096UL << 20)]
    public void TheE820TableListsTheRamAbove4GiBAsQemusFirmwareDoes(string memory, ulong bytes)
    {
        string qemu = QemuReference.Require();
        CliProcess.Result reference = CliProcess.RunProgram(qemu,
            ["-kernel", Repository.GuestElf("bootinfo"), "-m", memory, "-serial", "stdio", "-monitor", "none", "-display", "none",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"], Repository.Root);
        (ulong, ulong)[] qemuHigh = [.. Regex.Matches(System.Text.Encoding.Latin1.GetString(reference.Stdout), @"([0-9a-f]{16})-([0-9a-f]{16}) type 1 \(RAM\)")
            .Select(m => (ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber), ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber)))
            .Where(r => r.Item1 >= 1UL << 32)];
        (ulong, ulong)[] ours = [.. LinuxBoot.MemoryMap(bytes).Where(e => e.Base >= 1UL << 32 && e.Type == 1).Select(e => (e.Base, e.Base + e.Length - 1))];
        Assert.That(qemuHigh, Is.Not.Empty, "QEMU listed no RAM above 4 GiB");
        Assert.That(ours, Is.EqualTo(qemuHigh));
    }
}
