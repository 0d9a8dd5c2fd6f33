using HybridVmm.Hardware.SavedState;
using HybridVmm.HostOS.Encapsulation;
using HybridVmm.Tests.Support;

namespace HybridVmm.Tests.Encapsulation;

/// <summary>
/// Issue 14: a restore read its snapshot file three times (the checksum, then the page numbers, then the pages). Now the
/// page numbers are checked in the checksum pass, so the memory chunk, nearly all of a large snapshot, is read twice:
/// once to verify the file before any partition exists, once into the restored VM's RAM. Counted on the stream itself.
/// </summary>
public class SnapshotReadPassesTests
{
    [Test]
    public void ARestoreReadsTheMemoryChunkTwice()
    {
        byte[] file = Snapshots.SavedHello();
        SavedStateChunkEntry memory = SavedStateContainerReader.TryOpen(new MemoryStream(file), out string openError)!.Find(GuestMemoryCodec.Tag)
            ?? throw new AssertionException(openError);
        var counted = new CountingStream(file, memory.Offset, memory.Offset + memory.Length);

        VmSnapshot? snapshot = SnapshotFormat.TryRead(counted, out string error, memoryInPlace: true);
        Assert.That(snapshot, Is.Not.Null, error);
        long verifying = counted.BytesInRange;
        int pages = 0;
        Assert.That(snapshot!.Memory.ForEach((_, _) => pages++), Is.Null);

        TestContext.Out.WriteLine($"memory chunk {memory.Length} bytes, {pages} pages: {verifying} read to verify, {counted.BytesInRange - verifying} to restore");
        Assert.Multiple(() =>
        {
            Assert.That(pages, Is.GreaterThan(0));
            Assert.That(verifying, Is.EqualTo(memory.Length + 4), "the checksum pass, which also checks the page numbers, and the page count when the chunk is decoded");
            Assert.That(counted.BytesInRange, Is.EqualTo(2 * memory.Length), "and the restore's own read: twice in all");
        });
    }

    [Test]
    public void APageOutsideTheVmIsStillRefusedWithTheCodecsMessage()
    {
        byte[] file = Snapshots.SavedHello();
        SavedStateChunkEntry memory = SavedStateContainerReader.TryOpen(new MemoryStream(file), out string openError)!.Find(GuestMemoryCodec.Tag)
            ?? throw new AssertionException(openError);
        // The first page's number: 0xFFFFF, far above the small guest's RAM; then the checksum is recomputed, as anyone can.
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan((int)memory.Offset + 4), 0xFFFFF);
        System.Security.Cryptography.SHA256.HashData(file.AsSpan(0, file.Length - 32)).CopyTo(file.AsSpan(file.Length - 32));

        VmSnapshot? inPlace = SnapshotFormat.TryRead(new MemoryStream(file), out string inPlaceError, memoryInPlace: true);
        VmSnapshot? copied = SnapshotFormat.TryRead(new MemoryStream(file), out string copiedError);
        Assert.Multiple(() =>
        {
            Assert.That(inPlace, Is.Null);
            Assert.That(copied, Is.Null);
            Assert.That(inPlaceError, Does.StartWith("chunk 'memory' (guest memory state version 1) is malformed: page 1048575 lies outside the VM's"));
            Assert.That(inPlaceError, Is.EqualTo(copiedError), "the scan in the checksum pass words it as the codec does");
        });
    }

    /// <summary>A read-only seekable stream over bytes that counts what is read of [first, end).</summary>
    private sealed class CountingStream(byte[] bytes, long first, long end) : MemoryStream(bytes, writable: false)
    {
        public long BytesInRange { get; private set; }

        public override int Read(byte[] buffer, int offset, int count) => Count(base.Read(buffer, offset, count));

        // Read(Span<byte>) is not overridden: a derived MemoryStream's goes through Read(byte[], int, int), counted here.

        public override int ReadByte()
        {
            int b = base.ReadByte();
            Count(b >= 0 ? 1 : 0);
            return b;
        }

        private int Count(int n)
        {
            long from = Math.Max(Position - n, first), to = Math.Min(Position, end);
            BytesInRange += Math.Max(0, to - from);
            return n;
        }
    }
}
