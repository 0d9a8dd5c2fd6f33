using System.Collections.Concurrent;
using HybridVmm.Hypervisor.Scheduling;

namespace HybridVmm.Cli.Api;

/// <summary>
/// The management API's single control channel: every action that reads or changes a VM runs on the scheduler's
/// thread at a round barrier, one after another in the order they were asked for. At the barrier no vCPU executes
/// and every intercept has been answered, so a pause lands on an instruction boundary, a checkpoint reads a
/// quiescent guest, statistics are read while nothing updates them, and two clients racing on one VM see the
/// outcome of one serial order (Firecracker's API thread hands its requests to the VMM thread in the same way).
/// </summary>
public sealed class ControlBarrier
{
    /// <summary>How long a request waits for a barrier: a round takes milliseconds, so this is a stopped scheduler.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly Scheduler _scheduler;
    private readonly ConcurrentQueue<Action> _actions = new();
    private readonly List<(Func<bool> Condition, TaskCompletionSource Done)> _watches = [];
    private int _pending;

    public ControlBarrier(Scheduler scheduler)
    {
        _scheduler = scheduler;
        scheduler.RoundCompleted += RunPending;
    }

    /// <summary>Runs <paramref name="action"/> at the next round barrier and returns its result (or its exception).</summary>
    /// <exception cref="TimeoutException">The scheduler reached no barrier within <see cref="Timeout"/> (it has stopped).</exception>
    public async Task<T> RunAsync<T>(Func<T> action, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _actions.Enqueue(() =>
        {
            try
            {
                done.SetResult(action());
            }
            catch (Exception e)
            {
                // A bug in an action must reach its request, never the scheduler's thread.
                done.SetException(e);
            }
        });
        Interlocked.Increment(ref _pending);
        _scheduler.Wake(); // an idle scheduler runs one empty round, and so reaches a barrier
        return await done.Task.WaitAsync(Timeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Completes at the first round barrier where <paramref name="condition"/> holds (checked at every barrier from the
    /// next one on), for example a VM that pauses itself at an instruction. No timeout: the condition is the caller's.
    /// </summary>
    public async Task WhenAsync(Func<bool> condition, CancellationToken cancellationToken)
    {
        var watch = (condition, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        lock (_watches)
        {
            _watches.Add(watch);
        }

        Interlocked.Increment(ref _pending);
        _scheduler.Wake();
        try
        {
            await watch.Item2.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (_watches)
            {
                if (_watches.Remove(watch))
                {
                    Interlocked.Decrement(ref _pending);
                }
            }
        }
    }

    /// <summary>Called by the scheduler at every round barrier: one read of a counter when nothing is asked.</summary>
    private void RunPending()
    {
        if (Volatile.Read(ref _pending) == 0)
        {
            return;
        }

        while (_actions.TryDequeue(out Action? action))
        {
            Interlocked.Decrement(ref _pending);
            action();
        }

        lock (_watches)
        {
            for (int i = _watches.Count - 1; i >= 0; i--)
            {
                (Func<bool> condition, TaskCompletionSource done) = _watches[i];
                bool holds;
                try
                {
                    holds = condition();
                }
                catch (Exception e)
                {
                    // As with an action: a bug reaches its waiter, never the scheduler's thread.
                    _watches.RemoveAt(i);
                    Interlocked.Decrement(ref _pending);
                    done.SetException(e);
                    continue;
                }

                if (holds)
                {
                    _watches.RemoveAt(i);
                    Interlocked.Decrement(ref _pending);
                    done.SetResult();
                }
            }
        }
    }
}
