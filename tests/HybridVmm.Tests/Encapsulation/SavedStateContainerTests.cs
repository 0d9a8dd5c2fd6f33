using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Devices;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// The snapshot container (format version 3): chunks with a tag and a version, a table at the end, a SHA-256.
/// Every defect is one clear refusal, checked before anything is allocated from a length the file declares.
/// Crafted files are resealed (<see cref="Reseal"/>) so that the check under test, not the checksum, refuses them.
/// </summary>
public class SavedStateContainerTests
{
    private static readonly SavedStateChunk[] Sample =
    {
        new("partition", 1, "config"u8.ToArray()),
        new("cpu.vp0", 2, new byte[] { 1, 2, 3, 4 }),
        new("device.debug-exit", 1, Array.Empty<byte>()),
        new("memory", 7, Enumerable.Range(0, 10_000).Select(i => (byte)i).ToArray()),
    };

    [Test]
    public void ChunksComeBackWithTheirTagsVersionsAndPayloadsInOrder()
    {
        SavedStateContainerReader reader = Open(SavedStateContainer.ToBytes(Sample), out string error)!;

        Assert.That(reader, Is.Not.Null, error);
        Assert.That(reader.Chunks.Select(c => (c.Tag, c.Version, c.Length)), Is.EqualTo(Sample.Select(c => (c.Tag, c.Version, (long)c.Payload.Length))));
        foreach (SavedStateChunk expected in Sample)
        {
            Assert.That(reader.TryReadChunk(reader.Find(expected.Tag)!.Value, 1 << 20, out SavedStateChunk chunk, out error), Is.True, error);
            Assert.That(chunk.Payload, Is.EqualTo(expected.Payload));
            Assert.That(reader.OpenChunk(reader.Find(expected.Tag)!.Value).ReadRemaining(1 << 20), Is.EqualTo(expected.Payload), "streamed the same");
        }
    }

    [Test]
    public void TheLayoutIsTheDocumentedOne()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);

        Assert.That(Encoding.ASCII.GetString(file, 0, 8), Is.EqualTo("HVMMSNAP"));
        Assert.That(BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(8)), Is.EqualTo(3));
        Assert.That(BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(12)), Is.Zero);
        Assert.That(file.AsSpan(16, 6).ToArray(), Is.EqualTo("config"u8.ToArray()), "the first payload follows the header");
        long table = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(file.Length - 48));
        Assert.That(BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(file.Length - 40)), Is.EqualTo(Sample.Length));
        Assert.That(table + BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(file.Length - 36)), Is.EqualTo(file.Length - 48));
        Assert.That(file[(int)table], Is.EqualTo("partition".Length));
        Assert.That(file[^32..], Is.EqualTo(SHA256.HashData(file.AsSpan(0, file.Length - 32))));
    }

    [Test]
    public void ACorruptedTableIsRefusedByTheChecksum()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        file[TableOffset(file) + 3] ^= 0x20;

        Assert.That(Open(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot is corrupt: its SHA-256 checksum does not match its contents"));
    }

    [Test]
    public void ACorruptedTableWithARecomputedChecksumIsStillRefused()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        file[TableOffset(file)] = 200; // a tag length beyond the limit

        Assert.That(Open(Reseal(file), out string error), Is.Null);
        Assert.That(error, Does.Contain("chunk table is malformed"));
    }

    [Test]
    public void ATagWithForbiddenCharactersIsRefused()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        file[TableOffset(file) + 1] = (byte)'\n';

        Assert.That(Open(Reseal(file), out string error), Is.Null);
        Assert.That(error, Does.Contain("chunk table is malformed").And.Contain("'?artition'"));
    }

    [TestCase(1)]
    [TestCase(47)]
    [TestCase(5000)]
    public void ATruncatedFileIsRefused(int missing)
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);

        Assert.That(Open(file[..^missing], out string error), Is.Null);
        Assert.That(error, Does.Contain("truncated"));
    }

    [TestCase(0)]
    [TestCase(15)]
    [TestCase(40)]
    public void AFileShorterThanTheHeaderAndTrailerIsRefusedAsTruncated(int length)
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);

        Assert.That(Open(file[..length], out string error), Is.Null);
        Assert.That(error, Does.Contain("truncated"));
    }

    [Test]
    public void AWrongMagicIsRefused()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        file[3] = (byte)'X';

        Assert.That(Open(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("not a HybridVmm snapshot (bad magic)"));
    }

    [Test]
    public void AnUnknownContainerVersionIsRefusedNamingIt()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(8), 4);

        Assert.That(Open(file, out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot container version 4 is not supported (this build reads version 3)"));
        Assert.That(SnapshotFormat.TryDeserialize(file, out error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot format version 4 is not supported (this build reads versions 2 and 3)"));
    }

    [Test]
    public void ADuplicateTagIsRefused()
    {
        byte[] file = SavedStateContainer.ToBytes(new SavedStateChunk[] { new("device.com1", 1, new byte[7]), new("device.com2", 1, new byte[7]) });
        int second = TableOffset(file) + 1 + "device.com1".Length + 20;
        file[second + 1 + "device.com".Length] = (byte)'1';

        Assert.That(Open(Reseal(file), out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot has two chunks tagged 'device.com1'"));
    }

    [Test]
    public void AChunkLongerThanTheFileIsRefusedBeforeAnythingIsAllocated()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        int memoryEntry = EntryOffset(file, 3);
        BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(memoryEntry + 1 + "memory".Length + 12), long.MaxValue / 2);

        Assert.That(Open(Reseal(file), out string error), Is.Null);
        Assert.That(error, Does.StartWith("snapshot chunk 'memory' claims 4611686018427387903 bytes"));
    }

    [Test]
    public void ChunksThatOverlapOrLeaveGapsAreRefused()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        int cpuEntry = EntryOffset(file, 1);
        BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(cpuEntry + 1 + "cpu.vp0".Length + 4), 17);

        Assert.That(Open(Reseal(file), out string error), Is.Null);
        Assert.That(error, Does.StartWith("snapshot chunk 'cpu.vp0' claims 4 bytes at offset 17"));
    }

    [Test]
    public void AHugeChunkCountOrTableIsRefusedBeforeTheTableIsRead()
    {
        byte[] file = SavedStateContainer.ToBytes(Sample);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(file.Length - 40), int.MaxValue);
        Assert.That(Open(Reseal(file), out string error), Is.Null);
        Assert.That(error, Does.Contain($"claims {int.MaxValue} chunks"));

        file = SavedStateContainer.ToBytes(Sample);
        BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(file.Length - 48), -5);
        Assert.That(Open(Reseal(file), out error), Is.Null);
        Assert.That(error, Does.Contain("truncated or damaged"));
    }

    [Test]
    public void AChunkReadWholeIsBoundedByItsLimit()
    {
        SavedStateContainerReader reader = Open(SavedStateContainer.ToBytes(Sample), out _)!;

        Assert.That(reader.TryReadChunk(reader.Find("memory")!.Value, 4096, out _, out string error), Is.False);
        Assert.That(error, Is.EqualTo("chunk 'memory' holds 10000 bytes, more than the 4096 such a chunk may have"));
    }

    [Test]
    public void TheWriterRefusesADuplicateOrInvalidTagAsABug()
    {
        var writer = new SavedStateContainerWriter(new MemoryStream());
        writer.WriteChunk(new SavedStateChunk("cpu.vp0", 1, Array.Empty<byte>()));
        Assert.Throws<InvalidOperationException>(() => writer.WriteChunk(new SavedStateChunk("cpu.vp0", 1, Array.Empty<byte>())));
        Assert.Throws<InvalidOperationException>(() => writer.WriteChunk(new SavedStateChunk("CPU VP0", 1, Array.Empty<byte>())));
        Assert.Throws<InvalidOperationException>(() => writer.WriteChunk(new SavedStateChunk("cpu.vp1", 0, Array.Empty<byte>())));
    }

    [Test]
    public void ASnapshotRoundTripsThroughTheContainerChunkByChunk()
    {
        byte[] file = Snapshots.SavedHello();
        SavedStateContainerReader reader = Open(file, out string error)!;

        Assert.That(reader, Is.Not.Null, error);
        Assert.That(reader.Chunks.Select(c => $"{c.Tag} v{c.Version}"), Is.EqualTo(new[]
        {
            "partition v3", "cpu.vp0 v5", "interrupts.vp0 v2", "statistics v1", "clock v1", "hv.partition v3", "synic.vp0 v3",
            "apic.vp0 v1", "root.requests v1", "device.com1 v3", "device.provisioning v1", "device.fw-cfg v1", "device.port92 v1", "device.i8042 v1",
            "device.rtc v1", "device.pci v1", "device.pic v1", "device.pit v1", "device.ioapic v1", "device.acpi-pm v1", "memory v1",
        }));
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(file, out error)!;
        Assert.That(snapshot, Is.Not.Null, error);
        Assert.That(SnapshotFormat.Serialize(snapshot), Is.EqualTo(file));
    }

    [Test]
    public void AnUnknownChunkVersionIsRefusedNamingTheChunkAndTheVersion()
    {
        byte[] file = Snapshots.SavedHello();
        int cpuEntry = EntryOffset(file, 1);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(cpuEntry + 1 + "cpu.vp0".Length), 9);

        Assert.That(SnapshotFormat.TryDeserialize(Reseal(file), out string error), Is.Null);
        Assert.That(error, Is.EqualTo("chunk 'cpu.vp0' holds CPU register state version 9, which this build does not read (it writes version 5)"));
    }

    [Test]
    public void AChunkThisBuildDoesNotKnowIsRefusedRatherThanDropped()
    {
        SavedStateContainerReader reader = Open(Snapshots.SavedHello(), out _)!;
        var chunks = reader.Chunks.Select(e => reader.TryReadChunk(e, int.MaxValue, out SavedStateChunk c, out _) ? c : null!).ToList();
        chunks.Insert(3, new SavedStateChunk("pic.master", 1, new byte[3]));

        Assert.That(SnapshotFormat.TryDeserialize(SavedStateContainer.ToBytes(chunks), out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot holds chunk 'pic.master' (version 1), which this build does not know"));
    }

    [Test]
    public void AMissingChunkIsRefusedNamingIt()
    {
        SavedStateContainerReader reader = Open(Snapshots.SavedHello(), out _)!;
        var chunks = reader.Chunks.Where(e => e.Tag != "statistics").Select(e => reader.TryReadChunk(e, int.MaxValue, out SavedStateChunk c, out _) ? c : null!);

        Assert.That(SnapshotFormat.TryDeserialize(SavedStateContainer.ToBytes(chunks), out string error), Is.Null);
        Assert.That(error, Is.EqualTo("snapshot has no chunk 'statistics'"));
    }

    [Test]
    public void AMemoryChunkWithAPageOutsideTheVmIsRefused()
    {
        SavedStateContainerReader reader = Open(Snapshots.SavedHello(), out _)!;
        var chunks = reader.Chunks.Select(e => reader.TryReadChunk(e, int.MaxValue, out SavedStateChunk c, out _) ? c : null!).ToList();
        byte[] memory = chunks[^1].Payload;
        BinaryPrimitives.WriteUInt32LittleEndian(memory.AsSpan(4), 1024); // 4 MiB has pages 0..1023

        Assert.That(SnapshotFormat.TryDeserialize(SavedStateContainer.ToBytes(chunks), out string error), Is.Null);
        Assert.That(error, Is.EqualTo("chunk 'memory' (guest memory state version 1) is malformed: page 1024 lies outside the VM's 4 MiB"));
    }

    [Test]
    public void ACodecRefusesAnUnknownVersionNamingTheChunkAndTheVersion()
    {
        var chunk = new SavedStateChunk("device.com1", 4, new byte[10]);

        Assert.That(Uart16550StateCodec.Instance.TryDecode(chunk, out _, out string error), Is.False);
        Assert.That(error, Is.EqualTo("chunk 'device.com1' holds 16550 UART state version 4, which this build does not read (it writes version 3)"));
    }

    [Test]
    public void ACodecRefusesAMalformedPayloadWithoutAllocatingWhatItDeclares()
    {
        byte[] payload = new byte[20];
        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(16), int.MaxValue);

        Assert.That(HostOS.VmBus.SynthConsoleStateCodec.Instance.TryDecode(new SavedStateChunk("vmbus.channel.1.synthcon", 1, payload), out _, out string error), Is.False);
        Assert.That(error, Does.StartWith("chunk 'vmbus.channel.1.synthcon' (synthetic console state version 1) is malformed: a count of 2147483647 is outside"));
        Assert.That(ProvisioningStateCodec.Instance.TryDecode(new SavedStateChunk("device.provisioning", 1, new byte[5]), out _, out error), Is.False);
        Assert.That(error, Does.EndWith("is malformed: 1 bytes are left over"));
    }

    [Test]
    public void RestoringADeviceChunkOfAnUnknownVersionIsRefusedWithTheDeviceAndTheVersion()
    {
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(Snapshots.SavedHello(), out _)!;
        DeviceState[] states = snapshot.DeviceStates.Select(d => d.Name == "com1" ? d with { State = d.State with { Version = 5 } } : d).ToArray();

        using var machine = new TestMachine();
        Assert.That(machine.System.Root.RestoreVm(snapshot with { DeviceStates = states }, out VmCreationError? error), Is.Null);
        Assert.That(error!.Message, Is.EqualTo("snapshot holds state for device 'com1' that this VM cannot take: chunk 'device.com1' holds 16550 UART state version 5, which this build does not read (it writes version 3)"));
        Assert.That(error.Kind, Is.EqualTo(VmCreationErrorKind.InvalidImage));
    }

    [Test]
    public void RestoringADeviceChunkThatIsMalformedKeepsTodaysMessage()
    {
        VmSnapshot snapshot = SnapshotFormat.TryDeserialize(Snapshots.SavedHello(), out _)!;
        DeviceState[] states = snapshot.DeviceStates.Select(d => d.Name == "com1" ? d with { State = d.State with { Payload = new byte[3] } } : d).ToArray();

        using var machine = new TestMachine();
        Assert.That(machine.System.Root.RestoreVm(snapshot with { DeviceStates = states }, out VmCreationError? error), Is.Null);
        Assert.That(error!.Message, Is.EqualTo("snapshot holds state for device 'com1' that this VM cannot take"));
    }

    [Test]
    public void TheCliRefusesADamagedContainerWithStatus65AndOneLine()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hybridvmm-{Guid.NewGuid():N}.snap");
        try
        {
            byte[] file = Snapshots.SavedHello();
            int cpuEntry = EntryOffset(file, 1);
            BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(cpuEntry + 1 + "cpu.vp0".Length), 9);
            File.WriteAllBytes(path, Reseal(file));

            CliProcess.Result result = CliProcess.Run("restore", path);

            Assert.That(result.ExitCode, Is.EqualTo(HybridVmm.Cli.Common.ExitStatus.InvalidImage));
            Assert.That(result.Stderr, Is.EqualTo($"hybridvmm: error: {path}: chunk 'cpu.vp0' holds CPU register state version 9, which this build does not read (it writes version 5)\n"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Seeded mutations of a real snapshot, resealed so that they reach the table and the codecs: each is read
    /// back or refused with one line, and never throws. (Fuzzing at volume is issue 14's; this is the smoke test.)
    /// </summary>
    [Test]
    public void MutatedSnapshotsAreReadOrRefusedWithOneLineAndNeverThrow()
    {
        byte[] original = Snapshots.SavedHello();
        var random = new Random(20261202);
        int refused = 0;
        for (int i = 0; i < 400; i++)
        {
            byte[] file = (byte[])original.Clone();
            int flips = 1 + random.Next(4);
            for (int f = 0; f < flips; f++)
            {
                // Half the mutations hit the table and trailer, where the lengths are.
                int at = random.Next(2) == 0 ? random.Next(file.Length - 32) : TableOffset(original) + random.Next(original.Length - 32 - TableOffset(original));
                file[at] = (byte)random.Next(256);
            }

            if (random.Next(8) == 0)
            {
                file = file[..random.Next(file.Length)];
            }

            byte[] mutated = file.Length >= 32 ? Reseal(file) : file;
            VmSnapshot? snapshot = null;
            string error = "";
            Assert.DoesNotThrow(() => snapshot = SnapshotFormat.TryDeserialize(mutated, out error), $"case {i}");
            if (snapshot is null)
            {
                refused++;
                Assert.That(error, Is.Not.Empty.And.Not.Contains("\n"), $"case {i}");
            }
        }

        Assert.That(refused, Is.GreaterThan(100));
        TestContext.Out.WriteLine($"{refused} of 400 mutated snapshots refused, the rest read");
    }

    private static SavedStateContainerReader? Open(byte[] file, out string error) => SavedStateContainerReader.TryOpen(new MemoryStream(file), out error);

    private static int TableOffset(byte[] file) => (int)BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(file.Length - 48));

    /// <summary>Where table entry <paramref name="index"/> starts.</summary>
    private static int EntryOffset(byte[] file, int index)
    {
        int at = TableOffset(file);
        for (int i = 0; i < index; i++)
        {
            at += 1 + file[at] + 20;
        }

        return at;
    }

    /// <summary>Recomputes the checksum of a crafted file, as anyone can.</summary>
    private static byte[] Reseal(byte[] file)
    {
        SHA256.HashData(file.AsSpan(0, file.Length - 32)).CopyTo(file, file.Length - 32);
        return file;
    }
}
