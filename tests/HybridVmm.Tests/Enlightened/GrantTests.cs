using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Hypervisor.Tracing;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Enlightened;

/// <summary>Grants: once a guest runs, the root reaches its memory only through pages a GPADL lists.</summary>
public class GrantTests
{
    private const uint HypercallPage = 0x10000, Input = 0x11000;

    /// <summary>Grants pages 0x200 and 0x201 (GPA 0x200000-0x201FFF) as GPADL 9, then halts with IF=0.</summary>
    private static byte[] Granter => FlatKernel.Build(a =>
    {
        a.mov(esp, 0x80000);
        a.mov(ecx, HvMsr.GuestOsId); a.mov(eax, 1); a.xor(edx, edx); a.wrmsr();
        a.mov(ecx, HvMsr.Hypercall); a.mov(eax, HypercallPage | 1); a.wrmsr();
        a.mov(__dword_ptr[Input], 9u); a.mov(__dword_ptr[Input + 4], 2u);
        a.mov(__dword_ptr[Input + 8], 0x200u); a.mov(__dword_ptr[Input + 16], 0x201u);
        a.mov(__dword_ptr[0x200000], 0x11111111u);
        a.mov(__dword_ptr[0x300000], 0x22222222u);
        a.mov(eax, HvCallCode.CreateGpadl); a.mov(edx, 2); a.mov(ecx, Input); a.xor(ebx, ebx);
        a.mov(ebp, HypercallPage); a.call(ebp);
        a.cli(); a.hlt();
    });

    private static async Task<(HypervisorKernel Kernel, RootPartitionApi Api, PartitionHandle Guest, TraceRecorder Trace)> BootGranter()
    {
        var trace = new TraceRecorder(null, keepInMemory: true);
        var kernel = new HypervisorKernel(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, trace);
        RootPartitionApi api = kernel.ClaimRootApi();
        PartitionHandle guest = api.CreatePartition("granter", 4u << 20)!.Value;
        PreparedImage image = RootPartition.Prepare(new VmConfiguration { Name = "granter", Image = Granter, MemoryBytes = 4u << 20 }, out _)!;
        foreach (var write in image.Writes)
        {
            Assert.That(api.WriteGuestMemory(guest, write.GuestPhysicalAddress, write.Data), Is.True, "the loader may write before the start");
        }

        api.SetBootState(guest, image.Entry, 0x2BADB002, 0x9000);
        api.Start(guest);
        await kernel.Scheduler.RunAsync(untilIdle: true, CancellationToken.None);
        Assert.That((await api.Exited(guest)).Reason, Is.EqualTo(StopReason.Halted));
        return (kernel, api, guest, trace);
    }

    [Test]
    public async Task TheRootReachesOnlyGrantedPagesAndEveryOtherAccessIsRefusedAndTraced()
    {
        (HypervisorKernel kernel, RootPartitionApi api, PartitionHandle guest, TraceRecorder trace) = await BootGranter();

        byte[] four = new byte[4];
        Assert.Multiple(() =>
        {
            Assert.That(api.ReadGuestMemory(guest, 0x200000, four) && BitConverter.ToUInt32(four) == 0x11111111, Is.True, "granted page");
            Assert.That(api.ReadGpadl(guest, 9, 0, four) && BitConverter.ToUInt32(four) == 0x11111111, Is.True, "GPADL offset 0");
            Assert.That(api.WriteGpadl(guest, 9, 0x1000, new byte[] { 1, 2, 3, 4 }), Is.True, "second granted page");
            Assert.That(api.ReadGuestMemory(guest, 0x300000, four), Is.False, "never granted");
            Assert.That(api.WriteGuestMemory(guest, 0x1FFFFE, four), Is.False, "straddles into an ungranted page");
            Assert.That(api.ReadGpadl(guest, 9, 0x1FFE, four), Is.False, "runs past the end of the GPADL");
            Assert.That(api.ReadGpadl(guest, 10, 0, four), Is.False, "no such GPADL");
        });
        kernel.Trace.Flush();
        Assert.That(trace.Lines!.Where(l => l.Contains(" Grant ")).Select(l => l[13..]), Is.EqualTo(new[]
        {
            "granter/-  Grant     refused root read gpa=0x00300000 size=4 (not granted)",
            "granter/-  Grant     refused root write gpa=0x001ffffe size=4 (not granted)",
            "granter/-  Grant     refused root read gpadl=9 offset=0x1ffe size=4 (no such granted range)",
            "granter/-  Grant     refused root read gpadl=10 offset=0x0 size=4 (no such granted range)",
        }));
    }

    [Test]
    public async Task AMalformedRingIsReportedAndNeverThrows()
    {
        (_, RootPartitionApi api, PartitionHandle guest, _) = await BootGranter();
        var ring = new HybridVmm.HostOS.VmBus.RingBuffer(api, guest, 9, 0, 2);
        void Control(uint write, uint read) =>
            api.WriteGpadl(guest, 9, 0, BitConverter.GetBytes(write).Concat(BitConverter.GetBytes(read)).ToArray());

        Assert.That((ring.TryRead(out _, out _, out bool malformed), malformed), Is.EqualTo((false, true)), "the guest left 0x11111111 there");
        Control(write: 0, read: 0);
        Assert.That((ring.TryRead(out _, out _, out malformed), malformed), Is.EqualTo((false, false)), "an empty ring");

        Control(write: 0x5000, read: 0);              // write index beyond the 4 KiB data area
        Assert.That((ring.TryRead(out _, out _, out malformed), malformed), Is.EqualTo((false, true)));
        Control(write: 16, read: 0);                  // a descriptor claiming 0xFFFF * 8 bytes
        api.WriteGpadl(guest, 9, 4096, new byte[] { 6, 0, 2, 0, 0xFF, 0xFF, 0, 0 });
        Assert.That((ring.TryRead(out _, out _, out malformed), malformed), Is.EqualTo((false, true)));
        Control(write: 12, read: 0);                  // misaligned
        Assert.That((ring.TryRead(out _, out _, out malformed), malformed), Is.EqualTo((false, true)));
        Control(write: 0, read: 0);
        Assert.That(ring.TryWrite(6, 0, 1, new byte[4000]), Is.True);
        Assert.That(ring.TryWrite(6, 0, 2, new byte[100]), Is.False, "full: nothing written");
        Assert.That(ring.TryRead(out var d, out byte[] payload, out malformed), Is.True);
        Assert.That((d.TransactionId, payload.Length, malformed), Is.EqualTo((1ul, 4000, false)));
    }
}
