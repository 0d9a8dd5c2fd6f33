using System.Collections.Concurrent;

namespace HybridVmm.Hypervisor.Interrupts;

/// <summary>
/// What the root posted for a vCPU: a fixed vector, a change of its interrupt-window request, a SINT to raise, or a
/// change to the partition's ports (applied in posting order with the rest, so a guest sees them at the same point).
/// </summary>
internal enum PostedKind : byte
{
    /// <summary>A fixed interrupt vector (a SynIC or hypercall-driven interrupt, a device line without a controller).</summary>
    Fixed,
    /// <summary>The root's interrupt controller has a request (INTR high): stop at the next interruptible boundary.</summary>
    WindowRequested,
    /// <summary>The request went away before the window came (the guest masked it, a level input dropped).</summary>
    WindowWithdrawn,
    /// <summary>
    /// An interrupt message in the MSI format (an I/O APIC redirection entry, or a device's MSI): the address selects
    /// the destination APICs, the data the vector, delivery mode and trigger (SDM Vol. 3A, 11.11).
    /// </summary>
    Msi,
    /// <summary>Raise a SINT of the vCPU's SynIC (<see cref="PostedInterrupt.Vector"/> the SINT), as a device's SINT route does.</summary>
    Sint,
    /// <summary>Connect a port inside the partition (<see cref="PostedInterrupt.Port"/>), HvConnectPort on the root's behalf.</summary>
    ConnectPort,
    /// <summary>Disconnect the port of connection <see cref="PostedInterrupt.Address"/>.</summary>
    DisconnectPort,
}

/// <summary>
/// Interrupts the root asserted for guests' vCPUs (a device's fixed vector) and the interrupt-window requests of its
/// interrupt controllers. The root may post from its own threads; only the scheduler thread delivers, into a vCPU that
/// is not running, so what the guest sees does not depend on host timing: what was posted while the root served an
/// intercept is delivered before that intercept completes.
/// </summary>
internal sealed class InterruptQueue
{
    private readonly ConcurrentQueue<PostedInterrupt> _posted = new();

    public void Post(int partitionId, int vpIndex, byte vector) => _posted.Enqueue(new(partitionId, vpIndex, PostedKind.Fixed, vector));

    public void PostWindow(int partitionId, int vpIndex, bool requested) =>
        _posted.Enqueue(new(partitionId, vpIndex, requested ? PostedKind.WindowRequested : PostedKind.WindowWithdrawn, 0));

    public void PostMsi(int partitionId, uint address, uint data) => _posted.Enqueue(new(partitionId, 0, PostedKind.Msi, (byte)data, address, data));

    public void PostSint(int partitionId, int vpIndex, int sint) => _posted.Enqueue(new(partitionId, vpIndex, PostedKind.Sint, (byte)sint));

    public void PostConnectPort(int partitionId, Hv1.HvPortInfo port) =>
        _posted.Enqueue(new(partitionId, port.TargetVp, PostedKind.ConnectPort, 0, port.ConnectionId, Port: port));

    public void PostDisconnectPort(int partitionId, uint connectionId) => _posted.Enqueue(new(partitionId, 0, PostedKind.DisconnectPort, 0, connectionId));

    public bool IsEmpty => _posted.IsEmpty;

    /// <summary>Hands everything posted to <paramref name="deliver"/>, in posting order.</summary>
    public void Drain(Action<PostedInterrupt> deliver)
    {
        while (_posted.TryDequeue(out PostedInterrupt posted))
        {
            deliver(posted);
        }
    }
}

/// <summary>
/// One posted item; <see cref="Address"/> and <see cref="Data"/> only for <see cref="PostedKind.Msi"/> (Address the connection ID
/// for the port kinds), <see cref="Port"/> only for <see cref="PostedKind.ConnectPort"/>.
/// </summary>
internal readonly record struct PostedInterrupt(int PartitionId, int VpIndex, PostedKind Kind, byte Vector, uint Address = 0, uint Data = 0, Hv1.HvPortInfo? Port = null);
