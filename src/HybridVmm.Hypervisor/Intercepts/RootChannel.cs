using HybridVmm.Hardware.Cpu;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>
/// Routing to the root partition: offers an intercept to the root by a direct switch (<see cref="RootDirectSwitch"/>)
/// or posts it on the root's port, suspending the vCPU that raised it either way, and at the scheduler's barrier
/// completes every reply (those the root served at once first, in the order they came, then the port's) through
/// <see cref="InterceptCompletion"/>. The count of outstanding intercepts is what the barrier waits for. Once one
/// intercept of a pass goes to the port, the rest of the pass follows it there, so a worker still serves its
/// intercepts in the order they were raised.
/// </summary>
internal sealed class RootChannel(MessagePort<InterceptMessage> interceptPort, MessagePort<InterceptReply> replyPort, TraceRecorder trace, InterceptCompletion completion)
{
    private int _outstanding;
    private readonly Queue<InterceptReply> _served = new();

    /// <summary>The root's direct switch while its message loop runs; null sends every intercept through the port.</summary>
    public RootDirectSwitch? Direct { get; set; }

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
        if (_outstanding == 0 && Direct is { } direct)
        {
            switch (direct(message, out InterceptReply reply))
            {
                case DirectSwitch.Served:
                    _served.Enqueue(reply);
                    return;
                case DirectSwitch.Pending:
                    _outstanding++;
                    return;
            }
        }

        _outstanding++;
        await interceptPort.SendAsync(message, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The barrier: waits for the root's reply to every intercept posted since the last barrier and completes each.</summary>
    public async ValueTask CompleteOutstandingAsync(CancellationToken cancellationToken)
    {
        while (_served.TryDequeue(out InterceptReply served))
        {
            completion.Complete(served);
        }

        while (_outstanding > 0)
        {
            InterceptReply reply = await replyPort.ReceiveAsync(cancellationToken).ConfigureAwait(false);
            _outstanding--;
            completion.Complete(reply);
        }
    }
}
