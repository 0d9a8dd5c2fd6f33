using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace HybridVmm.Cluster.Hosting;

/// <summary>
/// Orleans' fatal-error handler, with one step first. A silo that learns the cluster has declared it dead (it was frozen
/// or cut off for longer than the probes allow) ends its own process: Orleans' rule, since it may not rejoin under the
/// same identity. Before Orleans ends it, this host stops each cluster VM it still holds and says so: the cluster has
/// restarted them elsewhere under a newer epoch, so these copies are fenced off. Their leases ran out while the host
/// was away, so they were already paused at the first round barrier after it came back.
/// </summary>
internal sealed class DeclaredDeadFence(IFatalErrorHandler orleans, IServiceProvider services) : IFatalErrorHandler
{
    /// <summary>How long the stops may take before Orleans goes on; a round takes milliseconds.</summary>
    private static readonly TimeSpan StopLimit = TimeSpan.FromSeconds(5);

    public bool IsUnexpected(Exception exception) => orleans.IsUnexpected(exception);

    private readonly object _gate = new();
    private Task? _fenceAll;

    public void OnFatalException(object? sender = null, string? context = null, Exception? exception = null)
    {
        try
        {
            // Orleans may call this from more than one thread: the first starts the fences, and every caller waits
            // for them (and for the fences the watch has under way), so that each finishes, and says what it stopped,
            // before the process ends.
            // This thread waits, and so may another of Orleans': the pool must not wait for its slow growth to run
            // the scheduler's barrier and the logger that the fences need (a 2-core host starts with 2 threads).
            ThreadPool.GetMinThreads(out int workers, out int io);
            ThreadPool.SetMinThreads(workers + 4, io);
            Task fenceAll;
            lock (_gate)
            {
                fenceAll = _fenceAll ??= FenceAllAsync();
            }

            var local = services.GetRequiredService<LocalVms>();
            Task.WhenAll([fenceAll, .. local.Fences()]).Wait(StopLimit);
            // The console logger writes on its own thread; a moment lets it write these lines before the process ends.
            Thread.Sleep(250);
        }
        catch (Exception)
        {
            // Whatever went wrong here, Orleans' own handler must still run.
        }

        orleans.OnFatalException(sender!, context!, exception!);
    }

    private Task FenceAllAsync()
    {
        var agent = services.GetRequiredService<IHostAgent>();
        var local = services.GetRequiredService<LocalVms>();
        ILogger logger = services.GetRequiredService<ILoggerFactory>().CreateLogger<ProtectedVmWatch>();
        // Each VM once, whichever gets to it first: this or the watch.
        LocalVms.LocalVm[] vms = local.All().Where(vm => local.Remove(vm.Spec.Name)).ToArray();
        return Task.WhenAll(vms.Select(vm => FenceAsync(agent, logger, vm)));
    }

    /// <summary>Each VM on its own: one that cannot be stopped is said so, and keeps no other from being stopped.</summary>
    private static async Task FenceAsync(IHostAgent agent, ILogger logger, LocalVms.LocalVm vm)
    {
        const string why = "this host was declared dead and ends";
        try
        {
            await ProtectedVmWatch.StopFencedAsync(agent, logger, vm, why, StopLimit).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            logger.LogError("VM {Name}: epoch {Epoch} is fenced off ({Why}), but it could not be stopped here: {Reason}", vm.Spec.Name, vm.Epoch, why, e.Message);
        }
    }

    /// <summary>Wraps the fatal-error handler Orleans registered (call after UseOrleans).</summary>
    public static void Install(IServiceCollection services)
    {
        ServiceDescriptor inner = services.Last(d => d.ServiceType == typeof(IFatalErrorHandler));
        services.Remove(inner);
        services.AddSingleton<IFatalErrorHandler>(provider => new DeclaredDeadFence(
            (IFatalErrorHandler)(inner.ImplementationInstance ?? inner.ImplementationFactory?.Invoke(provider)
                ?? ActivatorUtilities.CreateInstance(provider, inner.ImplementationType!)), provider));
    }
}
