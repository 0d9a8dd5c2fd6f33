using System.Text;
using HybridVmm.HostOS.Devices;

namespace HybridVmm.Tests.Devices;

public class FwCfgDeviceTests
{
    private static byte[] ReadItem(FwCfgDevice fwCfg, ushort key, int length)
    {
        fwCfg.Out(FwCfgDevice.SelectorPort, key, size: 2);
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = (byte)fwCfg.In(FwCfgDevice.DataPort);
        }

        return bytes;
    }

    [Test]
    public void TheSignatureReadsQemuAndThenZerosPastItsEnd()
    {
        var fwCfg = new FwCfgDevice(64u << 20, 1);
        Assert.That(Encoding.ASCII.GetString(ReadItem(fwCfg, FwCfgDevice.Signature, 4)), Is.EqualTo("QEMU"));
        Assert.That(fwCfg.In(FwCfgDevice.DataPort), Is.Zero);
        Assert.That(fwCfg.In(FwCfgDevice.DataPort), Is.Zero);
    }

    [Test]
    public void RamSizeIsSixtyFourBitLittleEndianAndTheCpuCountsAreSixteenBit()
    {
        var fwCfg = new FwCfgDevice(0x7E00_0000u, 3);
        Assert.Multiple(() =>
        {
            Assert.That(BitConverter.ToUInt64(ReadItem(fwCfg, FwCfgDevice.RamSize, 8)), Is.EqualTo(0x7E00_0000ul));
            Assert.That(BitConverter.ToUInt16(ReadItem(fwCfg, FwCfgDevice.NbCpus, 2)), Is.EqualTo(3));
            Assert.That(BitConverter.ToUInt16(ReadItem(fwCfg, FwCfgDevice.MaxCpus, 2)), Is.EqualTo(3));
            Assert.That(BitConverter.ToUInt32(ReadItem(fwCfg, FwCfgDevice.Id, 4)), Is.EqualTo(1u), "traditional interface, no DMA");
            Assert.That(ReadItem(fwCfg, FwCfgDevice.FileDir, 4), Is.EqualTo(new byte[4]), "an empty file directory: a big-endian count of 0");
        });
    }

    [Test]
    public void TheCommandLineItemsExistOnlyWhenTheBuilderGivesACommandLine()
    {
        var linux = new FwCfgDevice(64u << 20, 1, "console=ttyS0");
        var multiboot = new FwCfgDevice(64u << 20, 1);
        Assert.Multiple(() =>
        {
            Assert.That(BitConverter.ToUInt32(ReadItem(linux, FwCfgDevice.CmdlineSize, 4)), Is.EqualTo(14u), "the text and its NUL");
            Assert.That(ReadItem(linux, FwCfgDevice.CmdlineData, 14), Is.EqualTo("console=ttyS0\0"u8.ToArray()));
            Assert.That(BitConverter.ToUInt32(ReadItem(multiboot, FwCfgDevice.CmdlineSize, 4)), Is.Zero);
        });
    }

    [Test]
    public void SelectingRewindsAnItemAndAnUnknownKeyReadsZeros()
    {
        var fwCfg = new FwCfgDevice(64u << 20, 1);
        ReadItem(fwCfg, FwCfgDevice.Signature, 2);
        Assert.That(Encoding.ASCII.GetString(ReadItem(fwCfg, FwCfgDevice.Signature, 4)), Is.EqualTo("QEMU"));
        Assert.That(ReadItem(fwCfg, 0x3FFF, 4), Is.EqualTo(new byte[4]));
        Assert.That(ReadItem(fwCfg, 0x8003, 4), Is.EqualTo(new byte[4]), "no architecture-local items");
    }

    [Test]
    public void AByteReadOfTheSelectorPortReadsDataAndOtherWidthsDoNothing()
    {
        var fwCfg = new FwCfgDevice(64u << 20, 1);
        fwCfg.Out(FwCfgDevice.SelectorPort, FwCfgDevice.Signature, size: 2);
        Assert.That(fwCfg.In(FwCfgDevice.SelectorPort), Is.EqualTo((uint)'Q'));
        Assert.That(fwCfg.In(FwCfgDevice.DataPort, 2), Is.Zero, "a word read is not part of the interface");
        Assert.That(fwCfg.In(FwCfgDevice.DataPort, 4), Is.Zero);
        fwCfg.Out(FwCfgDevice.DataPort, 0x55);            // a byte write: ignored
        fwCfg.Out(FwCfgDevice.SelectorPort, 0x0003, size: 4); // a dword write: ignored
        Assert.That(fwCfg.In(FwCfgDevice.DataPort), Is.EqualTo((uint)'E'), "the wider reads and the writes moved nothing");
    }

    [Test]
    public void TheSelectionAndOffsetTravelInTheSavedState()
    {
        var fwCfg = new FwCfgDevice(64u << 20, 1);
        ReadItem(fwCfg, FwCfgDevice.Signature, 2);
        var copy = new FwCfgDevice(64u << 20, 1);
        Assert.That(fwCfg.CopyStateTo(copy), Is.True);
        Assert.That(copy.In(FwCfgDevice.DataPort), Is.EqualTo((uint)'M'));
        Assert.That(copy.Save(), Is.EqualTo(new FwCfgState(FwCfgDevice.Signature, 3)));
    }
}
