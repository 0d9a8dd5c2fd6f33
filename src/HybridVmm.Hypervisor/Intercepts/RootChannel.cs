using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>
/// Routing to the root partition: posts an intercept on the root's port, suspending the vCPU that raised it,
/// and at the scheduler's barrier collects every outstanding reply and hands it to
/// <see cref="InterceptCompletion"/>. The count of outstanding intercepts is what the barrier waits for.
/// </summary>
internal sealed class RootChannel(MessagePort<InterceptMessage> interceptPort, MessagePort<InterceptReply> replyPort, TraceRecorder trace, InterceptCompletion completion)
{
    private int _outstanding;

    public string PortName => interceptPort.Name;

    public async ValueTask ForwardAsync(Partition partition, VirtualProcessor vp, CpuExit pendingExit, InterceptMessage message, CancellationToken cancellationToken)
    {
        partition.Statistics.ChannelMessages++;
        if (trace.Enabled)
        {
            trace.Record(message.VirtualTime, partition.Id, vp.Index, TraceKind.Intercept, $"{message} -> {interceptPort.Name}");
        }

        vp.PendingExit = pendingExit;
        vp.PendingTime = message.VirtualTime;
        vp.State = VpState.WaitingForRoot;
        _outstanding++;
        await interceptPort.SendAsync(message, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The barrier: waits for the root's reply to every intercept posted since the last barrier and completes each.</summary>
    public async ValueTask CompleteOutstandingAsync(CancellationToken cancellationToken)
    {
        while (_outstanding > 0)
        {
            InterceptReply reply = await replyPort.ReceiveAsync(cancellationToken).ConfigureAwait(false);
            _outstanding--;
            completion.Complete(reply);
        }
    }
}
