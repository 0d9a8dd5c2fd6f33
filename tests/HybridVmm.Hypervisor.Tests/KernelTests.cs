using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Partitions;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Hypervisor.Tests;

/// <summary>The kernel with a fake root: intercepts out and replies in, MMIO completion, faults, device timers, interrupts.</summary>
public class KernelTests
{
    private const uint Mmio = 0xF000_0000;

    [Test]
    public async Task AnInCompletesWithTheRootsValueAndAnOutCarriesItsValueToTheRoot()
    {
        var root = new FakeRoot();
        root.Answer = m => new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, m.Kind == InterceptKind.IoPortRead ? 0x41u : 0);
        PartitionHandle guest = root.Load("io", a =>
        {
            a.mov(dx, 0x60);
            a.@in(al, dx);
            a.add(al, 1);
            a.@out(0x61, al);
            a.cli(); a.hlt();
        });
        await root.RunAsync(guest);
        Assert.Multiple(async () =>
        {
            Assert.That(root.Seen.Select(m => (m.Kind, m.Port)), Is.EqualTo(new[] { (InterceptKind.IoPortRead, (ushort)0x60), (InterceptKind.IoPortWrite, (ushort)0x61) }));
            Assert.That(root.Seen[1].Value & 0xFF, Is.EqualTo(0x42u), "the guest saw 0x41 and added one");
            Assert.That((await root.Api.Exited(guest)).Reason, Is.EqualTo(StopReason.Halted));
            Assert.That(root.Api.Statistics(guest).ChannelMessages, Is.EqualTo(4), "two messages out, two replies in");
        });
    }

    [Test]
    public async Task AnMmioReadCompletesWithTheRootsValueAndAnMmioWriteCarriesItsBytes()
    {
        var root = new FakeRoot();
        root.Answer = m => new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, m.IsWrite ? 0 : 0x1234_5678u);
        PartitionHandle guest = root.Load("mmio", a =>
        {
            a.mov(ebx, Mmio);
            a.mov(eax, __dword_ptr[ebx]);
            a.not(eax);
            a.mov(__word_ptr[ebx + 0x10], ax);
            a.mov(__dword_ptr[0x1000], eax);
            a.cli(); a.hlt();
        });
        await root.RunAsync(guest);
        byte[] stored = new byte[4];
        Assert.That(root.Api.ReadSavedStateMemory(guest, 0x1000, stored), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(root.Seen.Select(m => (m.Kind, m.GuestPhysicalAddress, m.Size, m.IsWrite)), Is.EqualTo(new[]
            {
                (InterceptKind.UnmappedGpa, Mmio, (byte)4, false),
                (InterceptKind.UnmappedGpa, Mmio + 0x10, (byte)2, true),
            }), "each access reaches the root exactly once");
            Assert.That(root.Seen[1].Value & 0xFFFF, Is.EqualTo(~0x1234_5678u & 0xFFFF));
            Assert.That(BitConverter.ToUInt32(stored), Is.EqualTo(~0x1234_5678u), "the instruction completed with the root's value");
        });
    }

    [Test]
    public async Task ARootThatAnswersFaultStopsOnlyThatPartition()
    {
        var root = new FakeRoot();
        PartitionHandle bad = root.Load("bad", a => { a.mov(ebx, Mmio); a.mov(eax, __dword_ptr[ebx]); a.cli(); a.hlt(); });
        PartitionHandle good = root.Load("good", a =>
        {
            var loop = a.CreateLabel();
            a.mov(ecx, 1000);
            a.Label(ref loop);
            a.dec(ecx);
            a.jnz(loop);
            a.cli(); a.hlt();
        });
        root.Answer = m => m.PartitionId == bad.Id
            ? new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Fault, 0, "nothing here")
            : new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, 0);
        await root.RunAsync(bad, good);
        PartitionExit badExit = await root.Api.Exited(bad);
        Assert.Multiple(async () =>
        {
            Assert.That(badExit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(badExit.Diagnostic, Does.StartWith("guest fault: nothing here"));
            Assert.That((await root.Api.Exited(good)).Reason, Is.EqualTo(StopReason.Halted));
        });
    }

    [Test]
    public async Task ADeviceTimerStopsTheBootVcpuAtItsDeadlineAndAnAssertedInterruptReachesIt()
    {
        var root = new FakeRoot();
        PartitionHandle guest = root.Load("timer", a =>
        {
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.inc(ecx);
            a.jmp(spin);
        }, 4u << 20);
        root.Api.SetDeviceTimer(guest, 10_001);
        root.Answer = m =>
        {
            if (m.Kind == InterceptKind.DeviceTimer)
            {
                root.Api.Stop(guest); // the "device" ends the run when its timer fires
            }

            return new InterceptReply(m.PartitionId, m.VpIndex, InterceptAction.Resume, 0);
        };
        await root.RunAsync(guest);
        Assert.Multiple(() =>
        {
            Assert.That(root.Seen.Select(m => (m.Kind, m.VirtualTime)), Is.EqualTo(new[] { (InterceptKind.DeviceTimer, 10_001L) }));
            Assert.That(root.Api.Statistics(guest).InstructionsRetired, Is.EqualTo(10_001), "the vCPU stopped exactly at the deadline");
        });
    }
}
