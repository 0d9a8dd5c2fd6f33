namespace HybridVmm.Hypervisor.VmBus;

/// <summary>
/// One partition's grants: guest physical address descriptor lists (GPADLs, as in VMBus), each a list of
/// guest pages the guest has allowed the root to access, addressed as one virtually contiguous buffer.
/// The kernel keeps the table; the root can touch a guest page only if some GPADL lists it (the Xen
/// grant-table discipline), and every other access through <see cref="RootPartitionApi"/> is refused.
/// </summary>
/// <summary>How many GPADLs a partition may create, and how many pages each may grant (saved-state readers check them too).</summary>
public static class GpadlLimits
{
    public const int MaxGpadls = 64;

    public const int MaxPagesPerGpadl = 1024;
}

internal sealed class GpadlTable
{
    /// <summary>GPADLs per partition, and pages per GPADL: resource limits in the Firecracker spirit.</summary>
    public const int MaxGpadls = GpadlLimits.MaxGpadls;
    public const int MaxPagesPerGpadl = GpadlLimits.MaxPagesPerGpadl;

    private readonly Dictionary<uint, Gpadl> _gpadls = new();
    private readonly Dictionary<uint, int> _grantedPages = new();

    public int Count => _gpadls.Count;

    public bool TryGet(uint id, out Gpadl gpadl) => _gpadls.TryGetValue(id, out gpadl!) && gpadl.Complete;

    internal Gpadl? Find(uint id) => _gpadls.GetValueOrDefault(id);

    internal Gpadl Begin(uint id, int expectedPages)
    {
        var gpadl = new Gpadl(id, expectedPages);
        _gpadls.Add(id, gpadl);
        return gpadl;
    }

    internal void Append(Gpadl gpadl, uint guestPage)
    {
        gpadl.Pages.Add(guestPage);
        _grantedPages[guestPage] = _grantedPages.GetValueOrDefault(guestPage) + 1;
    }

    internal bool Remove(uint id)
    {
        if (!_gpadls.Remove(id, out Gpadl? gpadl))
        {
            return false;
        }

        foreach (uint page in gpadl.Pages)
        {
            if (--_grantedPages[page] == 0)
            {
                _grantedPages.Remove(page);
            }
        }

        return true;
    }

    /// <summary>Every GPADL, by ID, with its pages in order.</summary>
    public IReadOnlyList<GpadlState> SaveState()
    {
        var list = new List<GpadlState>(_gpadls.Count);
        foreach (Gpadl gpadl in _gpadls.Values.OrderBy(g => g.Id))
        {
            list.Add(new GpadlState(gpadl.Id, gpadl.ExpectedPages, gpadl.Pages.ToArray()));
        }

        return list;
    }

    /// <summary>Replaces every grant with the saved ones.</summary>
    internal void RestoreState(IReadOnlyList<GpadlState> gpadls)
    {
        _gpadls.Clear();
        _grantedPages.Clear();
        foreach (GpadlState saved in gpadls)
        {
            Gpadl gpadl = Begin(saved.Id, saved.ExpectedPages);
            foreach (uint page in saved.Pages)
            {
                Append(gpadl, page);
            }
        }
    }

    /// <summary>True when every page of [gpa, gpa+length) is listed by a complete or partial GPADL.</summary>
    public bool IsGranted(ulong gpa, int length)
    {
        if (length <= 0) return true;
        ulong first = gpa >> 12, last = (gpa + (ulong)length - 1) >> 12;
        if (last > uint.MaxValue) return false;
        for (uint page = (uint)first; page <= (uint)last; page++)
        {
            if (!_grantedPages.ContainsKey(page)) return false;
        }

        return true;
    }
}

/// <summary>One GPADL: the guest pages, in order, that form one buffer (e.g. a channel's two ring buffers).</summary>
internal sealed class Gpadl(uint id, int expectedPages)
{
    public uint Id { get; } = id;

    public int ExpectedPages { get; } = expectedPages;

    public List<uint> Pages { get; } = new();

    public bool Complete => Pages.Count == ExpectedPages;

    public long SizeBytes => (long)Pages.Count << 12;
}

/// <summary>A GPADL as a value: its ID, the page count it was created with, and the guest pages granted so far.</summary>
public sealed record GpadlState(uint Id, int ExpectedPages, IReadOnlyList<uint> Pages);
