using HybridVmm.HostOS;
using HybridVmm.HostOS.Management;
using HybridVmm.Hypervisor;
using HybridVmm.Hypervisor.Hypercalls;
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

    [Test]
    public async Task TheRootReachesOnlyGrantedPagesAndEveryOtherAccessIsRefusedAndTraced()
    {
        var trace = new TraceRecorder(null, keepInMemory: true);
        var kernel = new HypervisorKernel(new HypervisorOptions { HostMemoryBytes = 16L << 20 }, trace);
        RootPartitionApi api = kernel.ClaimRootApi();
        Partition guest = api.CreatePartition("granter", 4u << 20)!;
        PreparedImage image = RootPartition.Prepare(new VmConfiguration { Name = "granter", Image = Granter, MemoryBytes = 4u << 20 }, out _)!;
        foreach (var write in image.Writes)
        {
            Assert.That(api.WriteGuestMemory(guest, write.GuestPhysicalAddress, write.Data), Is.True, "the loader may write before the start");
        }

        api.SetBootState(guest, image.Entry, 0x2BADB002, 0x9000);
        api.Start(guest);
        await kernel.Scheduler.RunAsync(untilIdle: true, CancellationToken.None);
        Assert.That((await guest.Exited).Reason, Is.EqualTo(StopReason.Halted));

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
}
