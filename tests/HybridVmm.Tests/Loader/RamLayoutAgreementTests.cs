using HybridVmm.Guests;
using HybridVmm.Hardware.Memory;

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
}
