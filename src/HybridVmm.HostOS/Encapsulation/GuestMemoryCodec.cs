using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// Chunk "memory", version 1: { i32 n; n × { u32 PageNumber; u8 Bytes[4096] } }, the non-zero pages of guest
/// RAM (every other page is zero). A page number is a guest-physical address shifted by 12: for a guest of 3584 MiB or
/// more, its pages above 4 GiB have numbers from 2^20 on (<see cref="Hardware.Memory.GuestRam"/>), which a u32 holds, so
/// the chunk's version is unchanged. A codec instance knows the VM's RAM size, so the page count and every page
/// number are checked against its layout (a page of the hole below 4 GiB is refused). Given the <see cref="GuestMemoryScan"/>
/// that checked the page numbers during the file's checksum pass, it reads only the count and reports what the scan found. Pages are written one at a time from wherever they are (<see cref="SavedMemory"/>);
/// they are read one by one into memory, or, given the seekable <c>file</c> they lie in, only checked and left
/// there, to be read straight into the restored VM's RAM (<see cref="SnapshotFileMemory"/>).
/// </summary>
public sealed class GuestMemoryCodec(ulong memoryBytes, Stream? file = null, GuestMemoryScan? scanned = null) : StateCodec<SavedMemory>
{
    public const string Tag = "memory";
    public const int PageSize = SavedMemory.PageSize;

    public override string StateName => "guest memory";

    public override int Version => 1;

    private ulong PageLimit => memoryBytes / PageSize;

    public override void Write(SavedStateWriter w, SavedMemory memory)
    {
        w.WriteCount(memory.Count);
        if (memory.ForEach((number, bytes) =>
            {
                w.WriteUInt32(number);
                w.WriteBytes(bytes);
            }) is { } error)
        {
            throw new InvalidOperationException(error); // the caller resumed the VM before writing its snapshot: a bug
        }
    }

    /// <summary>Why a page number is refused: it is not a RAM page of the VM.</summary>
    public static string OutsideMessage(uint number, ulong memoryBytes) =>
        $"page {number} lies outside the VM's {memoryBytes / (1024 * 1024)} MiB";

    public override SavedMemory Read(SavedStateReader r, int version)
    {
        int count = r.ReadCount((int)Math.Min(PageLimit, int.MaxValue), 4 + PageSize);
        long first = file?.Position ?? 0;
        if (file is not null && scanned is { Complete: true } scan && scan.MemoryBytes == memoryBytes)
        {
            if (scan.Error is { } outside)
            {
                throw new SavedStateFormatException(outside);
            }

            r.Skip((long)count * (4 + PageSize));
            return new SnapshotFileMemory(file, first, count, memoryBytes);
        }

        var pages = file is null ? new List<SavedPage>(count) : null;
        for (int i = 0; i < count; i++)
        {
            uint number = r.ReadUInt32();
            if (!Hardware.Memory.GuestRam.IsRamPage(memoryBytes, number))
            {
                throw new SavedStateFormatException(OutsideMessage(number, memoryBytes));
            }

            if (pages is null)
            {
                r.Skip(PageSize);
            }
            else
            {
                pages.Add(new SavedPage(number, r.ReadBytes(PageSize)));
            }
        }

        return pages is null ? new SnapshotFileMemory(file!, first, count, memoryBytes) : SavedMemory.Of(pages);
    }
}
