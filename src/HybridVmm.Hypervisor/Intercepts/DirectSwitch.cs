namespace HybridVmm.Hypervisor.Intercepts;

/// <summary>What the root did with an intercept the kernel offered it by a direct switch.</summary>
public enum DirectSwitch
{
    /// <summary>The root could not take it now (its worker is busy); the kernel posts it on the root's port instead.</summary>
    NotTaken,

    /// <summary>Served: the reply is in the out parameter.</summary>
    Served,

    /// <summary>Taken, but the device deferred the access: the reply comes later on the kernel's reply port.</summary>
    Pending,
}

/// <summary>
/// The root partition's side of a direct switch: the kernel hands an intercept straight to the root on the same
/// logical processor, as Hyper-V switches a processor to the root's virtual processor to serve an intercept, instead
/// of posting it on a port for another host thread to pick up. The root's worker still serves it with its own devices;
/// only the thread hops go. See docs/architecture.md.
/// </summary>
public delegate DirectSwitch RootDirectSwitch(in InterceptMessage message, out InterceptReply reply);
