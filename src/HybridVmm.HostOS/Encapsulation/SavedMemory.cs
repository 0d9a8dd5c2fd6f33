using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>Called once per saved page, in order; <paramref name="bytes"/> is valid only during the call (a reused buffer).</summary>
public delegate void SavedPageAction(uint pageNumber, ReadOnlySpan<byte> bytes);

/// <summary>
/// The non-zero pages of a snapshot's guest RAM, wherever their bytes are: copied into memory (a checkpoint kept
/// while the VM runs on, a migration's final state), still in a paused VM's RAM (a save to a file), or still in
/// the snapshot file (a restore). The last two pass the pages one at a time through one reused buffer, so a save
/// or a restore of a guest of any size costs a page of extra host memory, never a copy of the guest's RAM (issue
/// 14, defect 1).
/// </summary>
public abstract class SavedMemory : IDisposable
{
    public const int PageSize = 4096;

    /// <summary>How many pages there are.</summary>
    public abstract int Count { get; }

    /// <summary>Visits every page in order; null, or why a page could not be read.</summary>
    public abstract string? ForEach(SavedPageAction action);

    /// <summary>Every page copied into memory (for a snapshot that must outlive its source).</summary>
    public IReadOnlyList<SavedPage> ToList()
    {
        var pages = new List<SavedPage>(Count);
        if (ForEach((number, bytes) => pages.Add(new SavedPage(number, bytes.ToArray()))) is { } error)
        {
            throw new InvalidOperationException(error);
        }

        return pages;
    }

    public static SavedMemory Of(IReadOnlyList<SavedPage> pages) => new CopiedMemory(pages);

    public virtual void Dispose() => GC.SuppressFinalize(this);

    private sealed class CopiedMemory(IReadOnlyList<SavedPage> pages) : SavedMemory
    {
        public override int Count => pages.Count;

        public override string? ForEach(SavedPageAction action)
        {
            foreach (SavedPage page in pages)
            {
                action(page.PageNumber, page.Bytes);
            }

            return null;
        }
    }
}

/// <summary>
/// Pages read from a paused or stopped VM's RAM when the snapshot is written, one at a time: valid only until the
/// VM runs again, so whoever captures it writes it before resuming the VM.
/// </summary>
public sealed class PausedVmMemory(IReadOnlyList<uint> pageNumbers, Func<uint, Memory<byte>, bool> readPage) : SavedMemory
{
    public override int Count => pageNumbers.Count;

    public override string? ForEach(SavedPageAction action)
    {
        byte[] buffer = new byte[PageSize];
        foreach (uint page in pageNumbers)
        {
            if (!readPage(page, buffer))
            {
                return $"page {page} cannot be read: the VM must stay paused or stopped until its snapshot is written";
            }

            action(page, buffer);
        }

        return null;
    }
}

/// <summary>
/// Pages still in a snapshot file whose checksum and page numbers were verified when it was opened
/// (<see cref="SnapshotFile.TryRead"/>): read from the same open stream when the VM is restored. Each page number
/// is checked again as it is read, so a file changed in between gives a refusal, never a write outside the VM.
/// </summary>
public sealed class SnapshotFileMemory : SavedMemory
{
    private readonly Stream _stream;
    private readonly long _offset;
    private readonly int _count;
    private readonly ulong _memoryBytes;

    internal SnapshotFileMemory(Stream stream, long offset, int count, ulong memoryBytes)
    {
        _stream = stream;
        _offset = offset;
        _count = count;
        _memoryBytes = memoryBytes;
    }

    public override int Count => _count;

    public override string? ForEach(SavedPageAction action)
    {
        byte[] buffer = new byte[PageSize];
        Span<byte> number = stackalloc byte[4];
        try
        {
            _stream.Flush(); // drops what the checks left in the read buffer: the pages come from the file as it is now
            _stream.Position = _offset;
            for (int i = 0; i < _count; i++)
            {
                _stream.ReadExactly(number);
                uint page = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(number);
                if (!Hardware.Memory.GuestRam.IsRamPage(_memoryBytes, page))
                {
                    return $"snapshot file changed while it was restored: page {page} lies outside the VM";
                }

                _stream.ReadExactly(buffer);
                action(page, buffer);
            }
        }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            return $"snapshot file cannot be read while it is restored: {e.Message}";
        }

        return null;
    }

    public override void Dispose()
    {
        _stream.Dispose();
        base.Dispose();
    }
}
