using HybridVmm.Hardware.SavedState;

namespace HybridVmm.HostOS.Encapsulation;

/// <summary>
/// Chunk "memory", version 1: { i32 n; n × { u32 PageNumber; u8 Bytes[4096] } }, the non-zero pages of guest
/// RAM (every other page is zero). A codec instance knows the VM's RAM size, so the page count and every page
/// number are checked against it; the pages are read one by one from the chunk's stream, so reading costs
/// the pages themselves and nothing more.
/// </summary>
public sealed class GuestMemoryCodec(uint memoryBytes) : StateCodec<IReadOnlyList<SavedPage>>
{
    public const string Tag = "memory";
    public const int PageSize = 4096;

    public override string StateName => "guest memory";

    public override int Version => 1;

    private uint PageLimit => memoryBytes / PageSize;

    public override void Write(SavedStateWriter w, IReadOnlyList<SavedPage> pages)
    {
        w.WriteCount(pages.Count);
        foreach (SavedPage page in pages)
        {
            w.WriteUInt32(page.PageNumber);
            w.WriteBytes(page.Bytes);
        }
    }

    public override IReadOnlyList<SavedPage> Read(SavedStateReader r, int version)
    {
        int count = r.ReadCount((int)Math.Min(PageLimit, int.MaxValue), 4 + PageSize);
        var pages = new List<SavedPage>(count);
        for (int i = 0; i < count; i++)
        {
            uint number = r.ReadUInt32();
            if (number >= PageLimit)
            {
                throw new SavedStateFormatException($"page {number} lies outside the VM's {memoryBytes / (1024 * 1024)} MiB");
            }

            pages.Add(new SavedPage(number, r.ReadBytes(PageSize)));
        }

        return pages;
    }
}
