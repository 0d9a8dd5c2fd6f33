using System.Security.Cryptography;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Kernel;

public class IsolationTests
{
    private const uint Memory = 4u << 20;

    /// <summary>A guest that fills 64 KiB of its RAM at 2 MiB with a pattern, then exits 0.</summary>
    private static byte[] Painter => FlatKernel.Build(a =>
    {
        a.mov(edi, 0x200000); a.mov(ecx, 0x4000); a.mov(eax, 0xC0FFEE11); a.cld(); a.rep.stosd();
        a.mov(eax, 0); a.@out(0xF4, eax);
    });

    /// <summary>A guest that writes just past the end of its RAM, then (if it survived) far beyond it.</summary>
    private static byte[] Attacker => FlatKernel.Build(a =>
    {
        a.mov(eax, 0xBAD0BAD0);
        a.mov(__dword_ptr[(int)Memory], eax);
        a.mov(__dword_ptr[0xF000_0000UL], eax);
        a.mov(eax, 0); a.@out(0xF4, eax);
    });

    [Test]
    public async Task AGuestWritingOutsideItsMemoryFaultsAloneAndTheOtherGuestIsUntouched()
    {
        string alone = await PainterMemoryHash(withAttacker: false);
        string beside = await PainterMemoryHash(withAttacker: true);
        Assert.That(beside, Is.EqualTo(alone), "the painter's RAM must be identical with or without the attacker");
    }

    [Test]
    public async Task TheSampleWildGuestFaultsWhileHelloRunsToCompletion()
    {
        using var machine = new TestMachine();
        VirtualMachine wild = machine.Create("wild", Repository.ReadGuest("wild"));
        VirtualMachine hello = machine.Create("hello", Repository.ReadGuest("hello"));
        await machine.RunAsync();
        PartitionExit wildExit = await wild.Exited;
        PartitionExit helloExit = await hello.Exited;
        Assert.Multiple(() =>
        {
            Assert.That(wildExit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(wildExit.Diagnostic, Does.Contain("outside the guest's"));
            Assert.That(helloExit.Reason, Is.EqualTo(StopReason.GuestExit));
            Assert.That(machine.Output(hello), Is.EqualTo(Repository.QemuOutput("hello")));
        });
    }

    [Test]
    public async Task AFreshPartitionNeverSeesTheDataOfADeletedOne()
    {
        using var machine = new TestMachine(hostMemoryBytes: Memory);
        VirtualMachine first = machine.Create("first", Painter, Memory);
        await machine.RunAsync();
        machine.System.Root.Delete(first);
        VirtualMachine second = machine.Create("second", FlatKernel.Build(a => a.hlt()), Memory);
        byte[] ram = new byte[0x10000];
        Assert.That(machine.System.Root.ReadMemoryOfStoppedVm(second, 0x200000, ram), Is.True);
        Assert.That(ram, Is.All.Zero, "the frames were scrubbed before reuse");
    }

    private static async Task<string> PainterMemoryHash(bool withAttacker)
    {
        using var machine = new TestMachine();
        VirtualMachine? attacker = withAttacker ? machine.Create("attacker", Attacker, Memory) : null;
        VirtualMachine painter = machine.Create("painter", Painter, Memory);
        await machine.RunAsync();
        Assert.That((await painter.Exited).Reason, Is.EqualTo(StopReason.GuestExit));
        if (attacker is not null)
        {
            PartitionExit exit = await attacker.Exited;
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(exit.Diagnostic, Does.Contain("0x00400000"), "the first out-of-range write is the one refused");
        }

        byte[] ram = new byte[Memory];
        Assert.That(machine.System.Root.ReadMemoryOfStoppedVm(painter, 0, ram), Is.True);
        return Convert.ToHexString(SHA256.HashData(ram));
    }
}
