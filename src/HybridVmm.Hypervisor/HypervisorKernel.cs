using HybridVmm.Hypervisor.GuestMemory;
using HybridVmm.Hardware.Cpu;
using HybridVmm.Hardware.Memory;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Messaging;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Scheduling;
using HybridVmm.Hypervisor.Tracing;

namespace HybridVmm.Hypervisor;

public sealed record HypervisorOptions
{
    /// <summary>Host physical memory the kernel manages for all partitions.</summary>
    public long HostMemoryBytes { get; init; } = 512L * 1024 * 1024;

    /// <summary>Instructions a vCPU may run before the scheduler moves on (one quantum of virtual time).</summary>
    public long Quantum { get; init; } = 100_000;

    /// <summary>Where emulated devices run: the root partition (hybrid), the kernel (Type 1) or a host process (Type 2).</summary>
    public DeviceHosting Hosting { get; init; } = DeviceHosting.Hybrid;

    /// <summary>The virtual cycles charged per intercept for the chosen <see cref="Hosting"/>.</summary>
    public CrossingCostModel Costs { get; init; } = new();

    public long InterceptCostTicks => Costs.For(Hosting).Ticks;

    /// <summary>Capacity of the root partition's intercept port; a full port holds senders back.</summary>
    public int InterceptPortCapacity { get; init; } = 64;

    /// <summary>Virtual ticks charged for an exit the kernel serves itself (RDMSR, WRMSR, VMCALL): no root round trip.</summary>
    public long SyntheticExitCostTicks { get; init; } = 1_000;
}

/// <summary>
/// The thin hypervisor kernel. It owns host physical memory, the partitions and their virtual processors,
/// the scheduler, CPUID and the message ports. Everything it does not own (I/O ports, unmapped GPAs) it
/// sends to the root partition as an intercept message.
/// </summary>
public sealed class HypervisorKernel
{
    private readonly object _gate = new();
    private RootPartitionApi? _rootApi;

    public HypervisorKernel(HypervisorOptions options, TraceRecorder trace)
    {
        Options = options;
        Trace = trace;
        Memory = new HostPhysicalMemory(checked((int)(options.HostMemoryBytes >> HostPhysicalMemory.FrameShift)));
        Frames = new FrameAllocator(Memory);
        InterceptPort = new MessagePort<InterceptMessage>("root.intercepts", options.InterceptPortCapacity);
        // Replies are bounded only by the number of vCPUs that can be waiting, so this port never holds the root back.
        ReplyPort = new MessagePort<InterceptReply>("kernel.replies", 1 << 16);
        VmBusPort = new MessagePort<VmBus.VmBusRequest>("root.vmbus", options.InterceptPortCapacity);
        VmBusDonePort = new MessagePort<VmBus.VmBusRequest>("kernel.vmbus-done", 1 << 16);
        Table = new PartitionTable(trace, Clock, () => Scheduler!.Wake());
        Enlightenments = new Enlightened.Enlightenments(Table, options.SyntheticExitCostTicks, VmBusPort, VmBusDonePort);
        Completion = new InterceptCompletion(Table, Interrupts);
        RootChannel = new RootChannel(InterceptPort, ReplyPort, trace, Completion);
        Dispatcher = new ExitDispatcher(Table, options.Costs.For(options.Hosting), InKernelDevices, Enlightenments, RootChannel, Completion);
        Scheduler = new Scheduler(Table, options.Quantum, Dispatcher, RootChannel, Completion, Enlightenments);
        Table.Add(new Partition(0, "root", addressSpace: null, instructionLimit: 0) { State = PartitionState.Running });
    }

    public HypervisorOptions Options { get; }

    public TraceRecorder Trace { get; }

    public Scheduler Scheduler { get; }

    public Hardware.Clock.VirtualClock Clock { get; } = new();

    /// <summary>The partitions, their virtual time and their lifecycle.</summary>
    internal PartitionTable Table { get; }

    /// <summary>What each VM exit means and who serves it.</summary>
    internal ExitDispatcher Dispatcher { get; }

    /// <summary>Intercepts on their way to the root, and the replies the barrier collects.</summary>
    internal RootChannel RootChannel { get; }

    /// <summary>Applies the root's replies (and the interrupts it asserted) to suspended vCPUs.</summary>
    internal InterceptCompletion Completion { get; }

    /// <summary>Synthetic MSRs, hypercalls, SynIC and VMBus plumbing (TLFS), served without the root.</summary>
    internal Enlightened.Enlightenments Enlightenments { get; }

    internal HostPhysicalMemory Memory { get; }

    internal FrameAllocator Frames { get; }

    /// <summary>Kernel to root: intercepts the root must serve.</summary>
    internal MessagePort<InterceptMessage> InterceptPort { get; }

    /// <summary>Root to kernel: completions of intercepts.</summary>
    internal MessagePort<InterceptReply> ReplyPort { get; }

    /// <summary>Kernel to root: guests' HvPostMessage / HvSignalEvent for the VMBus server.</summary>
    internal MessagePort<VmBus.VmBusRequest> VmBusPort { get; }

    /// <summary>Root to kernel: the VMBus server finished a request.</summary>
    internal MessagePort<VmBus.VmBusRequest> VmBusDonePort { get; }

    /// <summary>Interrupts the root asserted, waiting for the scheduler thread to deliver them.</summary>
    internal Interrupts.InterruptQueue Interrupts { get; } = new();

    /// <summary>
    /// Type 1 only: device models the kernel runs itself, per partition, installed by whoever builds the
    /// machine. In the hybrid and Type 2 configurations it stays empty and intercepts go to the root.
    /// </summary>
    internal Dictionary<int, Func<InterceptMessage, InterceptReply>> InKernelDevices { get; } = new();

    /// <summary>
    /// Hands out the root-only API, once. Whoever holds it is the root partition; nothing else in the
    /// process can create partitions, touch guest memory or complete intercepts.
    /// </summary>
    public RootPartitionApi ClaimRootApi()
    {
        lock (_gate)
        {
            if (_rootApi is not null)
            {
                throw new InvalidOperationException("The root partition API has already been claimed.");
            }

            _rootApi = new RootPartitionApi(this);
            return _rootApi;
        }
    }

    internal long Now(Partition partition) => Table.Now(partition);

    internal Partition? Find(int partitionId) => Table.Find(partitionId);

    internal void StopPartition(Partition partition, PartitionExit exit) => Table.Stop(partition, exit);

    internal Partition? CreateChild(string name, ulong memoryBytes, long instructionLimit, int processors = 1)
    {
        lock (Table.Gate)
        {
            GuestPhysicalAddressSpace? space = GuestPhysicalAddressSpace.TryCreate(Memory, Frames, memoryBytes);
            return space is null ? null : AddChild(name, space, instructionLimit, processors);
        }
    }

    /// <summary>A new partition sharing <paramref name="template"/>'s memory copy-on-write, with a copy of its vCPU state.</summary>
    internal Partition CloneChild(Partition template, string name)
    {
        lock (Table.Gate)
        {
            Partition clone = AddChild(name, template.AddressSpace!.CloneCopyOnWrite(), template.InstructionLimit, template.VirtualProcessors.Count);
            for (int i = 0; i < template.VirtualProcessors.Count; i++)
            {
                clone.VirtualProcessors[i].Core.RestoreState(template.VirtualProcessors[i].Core.SaveState());
            }

            return clone;
        }
    }

    private Partition AddChild(string name, GuestPhysicalAddressSpace space, long instructionLimit, int processors = 1)
    {
        var partition = new Partition(Table.NextId, name, space, instructionLimit);
        if (processors > 1)
        {
            partition.ApicBus = new ApicBus(partition, Table, Intercepts.CpuidPolicy.Signature);
        }

        X86Core? first = null;
        for (int i = 0; i < processors; i++)
        {
            X86Core core = new(Memory, space.Slat, first) // one decoded-code cache for the partition's processors
            {
                Cr0InterceptMask = Intercepts.ControlRegisterPolicy.Cr0Owned,
                Cr4InterceptMask = Intercepts.ControlRegisterPolicy.Cr4Owned,
            };
            first ??= core;
            partition.AddVp(core, Intercepts.CpuidPolicy.Signature);
        }

        space.HostWrote += first!.InvalidateCode;
        Table.Add(partition);
        return partition;
    }
}
