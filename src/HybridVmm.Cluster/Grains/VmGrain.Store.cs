using Microsoft.Extensions.Logging;
using Orleans.Storage;

namespace HybridVmm.Cluster.Grains;

/// <summary>
/// The VM grain's record in Redis: one write at a time (each carries the etag the one before left), progress written in
/// the background so that a report never waits for Redis, and what a failed write means: Redis is out of reach (the
/// record in memory is newer; docs/cluster.md, "When Redis is down"), or another activation has written since this one
/// read (this one is stale, and may not answer from memory).
/// </summary>
public sealed partial class VmGrain
{
    /// <summary>The last write to Redis, finished or not: every write waits for the one before (one etag at a time).</summary>
    private Task _write = Task.CompletedTask;

    /// <summary>A write failed for want of Redis: the record in memory is newer than Redis' (docs/cluster.md, "When Redis is down").</summary>
    private bool _storeFailing;

    /// <summary>Redis holds a newer record than this activation (another activation wrote it): it may not answer from memory.</summary>
    private bool _stale;

    /// <summary>Writes the record after any write still under way, so that two writes never carry the same etag.</summary>
    private Task WriteAsync()
    {
        Task before = _write;
        Task mine = After(before, async () =>
        {
            try
            {
                await record.WriteStateAsync();
            }
            catch (Exception e)
            {
                NoteFailure(e);
                throw;
            }

            if (_storeFailing)
            {
                logger.LogInformation("VM {Name}: its record is written to the control store again", Name);
            }

            _storeFailing = false;
        });
        _write = mine;
        return mine;
    }

    private async Task ReadAsync()
    {
        try
        {
            await _write;
        }
        catch (Exception)
        {
            // The failed write was reported to its own caller.
        }

        await record.ReadStateAsync();
    }

    private static async Task After(Task before, Func<Task> then)
    {
        try
        {
            await before;
        }
        catch (Exception)
        {
            // The failed write was reported to its own caller.
        }

        await then();
    }

    private async Task PersistProgressAsync()
    {
        try
        {
            await WriteAsync();
        }
        catch (Exception)
        {
            // Noted by WriteAsync; the next report tries again.
        }
    }

    private void NoteFailure(Exception e)
    {
        if (IsStale(e))
        {
            // Another activation has written since this one read: its memory may be out of date (an epoch moved on).
            _stale = true;
            DeactivateOnIdle();
            return;
        }

        if (!_storeFailing)
        {
            Exception cause = e;
            while (cause.InnerException is { } inner)
            {
                cause = inner;
            }

            logger.LogWarning("cluster degraded: VM {Name}: cannot write its record to the control store: {Reason}", Name, cause.Message);
        }

        _storeFailing = true;
    }

    private static bool IsStale(Exception e) => e is InconsistentStateException || e.InnerException is InconsistentStateException;
}
