using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Testing;
using Iced.Intel;

namespace HybridVmm.Hypervisor.Tests;

/// <summary>
/// A test double of the root partition: it claims the root API, loads flat code into a partition, and serves
/// the kernel's intercepts with <see cref="Answer"/>, recording each one. Only the root API is used, so these
/// tests also show that the API is enough to drive the kernel.
/// </summary>
public sealed class FakeRoot
{
    public const uint Entry = 0x0010_0000;

    public FakeRoot(long quantum = 100_000)
    {
        Trace = new TraceRecorder(null, keepInMemory: true);
        Kernel = new HypervisorKernel(new HypervisorOptions { HostMemoryBytes = 16L << 20, Quantum = quantum }, Trace);
        Api = Kernel.ClaimRootApi();
    }

    public HypervisorKernel Kernel { get; }

    public RootPartitionApi Api { get; }

    public TraceRecorder Trace { get; }

    /// <summary>Every intercept the kernel posted, in order.</summary>
    public List<InterceptMessage> Seen { get; } = new();

    /// <summary>How the fake root answers an intercept; by default a read returns 0 and everything resumes.</summary>
    public Func<InterceptMessage, InterceptReply> Answer { get; set; } =
        m => new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, 0);

    public PartitionHandle Load(string name, Action<Assembler> program, uint memoryBytes = 4u << 20)
    {
        PartitionHandle partition = Api.CreatePartition(name, memoryBytes) ?? throw new AssertionException("no host memory for the partition");
        Assert.That(Api.WriteGuestMemory(partition, Entry, GuestCode.Assemble(program, Entry)), Is.True);
        Api.SetBootState(partition, Entry, 0, 0);
        return partition;
    }

    /// <summary>Starts the partitions and serves intercepts until nothing can run.</summary>
    public async Task RunAsync(params PartitionHandle[] partitions)
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        Task serving = Task.Run(async () =>
        {
            try
            {
                await foreach (InterceptMessage message in Api.Intercepts.ReadAllAsync(stop.Token))
                {
                    Seen.Add(message);
                    await Api.CompleteInterceptAsync(Answer(message), stop.Token);
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
        foreach (PartitionHandle partition in partitions)
        {
            Api.Start(partition);
        }

        await Kernel.Scheduler.RunAsync(untilIdle: true, stop.Token);
        Assert.That(stop.IsCancellationRequested, Is.False, "the kernel did not go idle within the safety limit");
        stop.Cancel();
        await serving;
        Trace.Flush();
    }
}
