using System.Net.Sockets;
using Orleans;
using Orleans.Runtime;

namespace HybridVmm.Cli.Cluster;

/// <summary>Failures that mean "the cluster cannot be reached" (Redis down, a port taken), not a bug of HybridVmm.</summary>
internal static class ClusterFailure
{
    public static bool IsJoinFailure(Exception e) => Walk(e).Any(x =>
        x is SocketException or TimeoutException or StackExchange.Redis.RedisException or Orleans.Runtime.OrleansException
            or Orleans.Runtime.OrleansMessageRejectionException or Orleans.Runtime.SiloUnavailableException
            or Orleans.Runtime.Messaging.ConnectionFailedException);

    /// <summary>
    /// The call failed because the silo holding its grain cannot be reached. A connection that could not be made means
    /// the call never left; a silo that became unavailable while the call was pending may have run it, which only a
    /// read (<paramref name="idempotent"/>) may ignore.
    /// </summary>
    public static bool IsUnreachableSilo(Exception e, bool idempotent) => Walk(e).Any(x =>
        x is Orleans.Runtime.Messaging.ConnectionFailedException || (idempotent && x is Orleans.Runtime.SiloUnavailableException));

    /// <summary>The innermost message, which names the cause (connection refused, address in use).</summary>
    public static string Describe(Exception e) => Walk(e).Last().Message;

    private static IEnumerable<Exception> Walk(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            yield return x;
            if (x is AggregateException { InnerExceptions.Count: > 0 } aggregate && aggregate.InnerExceptions[0] != x.InnerException)
            {
                x = aggregate.InnerExceptions[0];
                yield return x;
            }
        }
    }
}
