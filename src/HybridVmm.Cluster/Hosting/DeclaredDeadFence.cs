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

    public void OnFatalException(object? sender = null, string? context = null, Exception? exception = null)
    {
        try
        {
            var agent = services.GetRequiredService<IHostAgent>();
            var local = services.GetRequiredService<LocalVms>();
            ILogger logger = services.GetRequiredService<ILoggerFactory>().CreateLogger<ProtectedVmWatch>();
            // Each VM once, whichever of Orleans' threads (or the watch) gets to it first.
            LocalVms.LocalVm[] vms = local.All().Where(vm => local.Remove(vm.Spec.Name)).ToArray();

            Task.WhenAll(vms.Select(vm => ProtectedVmWatch.StopFencedAsync(agent, logger, vm, "this host was declared dead and ends", StopLimit)))
                .Wait(StopLimit);
            if (vms.Length > 0)
            {
                // The console logger writes on its own thread; a moment lets it write these lines before the process ends.
                Thread.Sleep(250);
            }
        }
        catch (Exception)
        {
            // Whatever went wrong here, Orleans' own handler must still run.
        }

        orleans.OnFatalException(sender!, context!, exception!);
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
