namespace HybridVmm.HostOS.Vm;

/// <summary>
/// A host output that may fail while guests run (stdout to /dev/full, a closed stdout): the first I/O error is kept as
/// a message and every later write is dropped, so the guests run on and the command reports the failure when it ends.
/// </summary>
public static class HostWriteFailure
{
    /// <summary>Runs <paramref name="write"/> unless <paramref name="failure"/> is already set; records its I/O error there.</summary>
    public static void Guard(ref string? failure, Action write)
    {
        if (failure is not null)
        {
            return;
        }

        try
        {
            write();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            failure = (e.InnerException as IOException ?? e).Message;
        }
    }
}
