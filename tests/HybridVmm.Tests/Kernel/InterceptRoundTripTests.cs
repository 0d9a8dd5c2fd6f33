using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Intercepts;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Kernel;

public class InterceptRoundTripTests
{
    [Test]
    public async Task AnUnclaimedPortReadsAllOnesForEachWidthAndWritesAreDropped()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(eax, 0); a.mov(dx, 0x200);                // the game port: nobody claims it
            a.@in(al, dx); a.mov(ebx, eax);                 // 8-bit: 0x000000FF
            a.mov(eax, 0); a.@in(ax, dx); a.mov(ecx, eax);  // 16-bit: 0x0000FFFF
            a.@in(eax, dx); a.mov(esi, eax);                // 32-bit: 0xFFFFFFFF
            a.mov(al, 0x55); a.@out(dx, al);                // dropped
            a.hlt();
        });
        (_, PartitionExit exit, VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.Halted));
            Hardware.Cpu.CpuState core = machine.System.Root.Registers(vm);
            Assert.Multiple(() =>
            {
                Assert.That(core.Ebx, Is.EqualTo(0xFFu));
                Assert.That(core.Ecx, Is.EqualTo(0xFFFFu));
                Assert.That(core.Esi, Is.EqualTo(0xFFFF_FFFFu));
                Assert.That(machine.TraceLines.Count(l => l.Contains("unclaimed read")), Is.EqualTo(3));
                Assert.That(machine.TraceLines.Count(l => l.Contains("unclaimed write") && l.Contains("(dropped)")), Is.EqualTo(1));
            });
        }
    }

    [Test]
    public async Task APortWriteTravelsKernelToRootToWorkerAndBackBeforeTheVcpuResumes()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(dx, 0x3F8); a.mov(al, (byte)'!'); a.@out(dx, al);
            a.mov(eax, 0); a.@out(0xF4, eax);
        });
        (string output, PartitionExit exit, VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(output, Is.EqualTo("!"));
            List<string> com1 = machine.TraceLines.SkipWhile(l => !l.Contains("port=0x03f8")).Take(4).ToList();
            Assert.That(com1, Has.Count.EqualTo(4));
            Assert.Multiple(() =>
            {
                Assert.That(com1[0], Does.Contain("Intercept").And.Contain("io-write port=0x03f8 size=1 value=0x21 -> root.intercepts"));
                Assert.That(com1[1], Does.Contain("Message").And.Contain("root -> worker.guest"));
                Assert.That(com1[2], Does.Contain("Device").And.Contain("com1 write port=0x03f8 size=1 value=0x21 '!'"));
                Assert.That(com1[3], Does.Contain("Message").And.Contain("reply resume"));
                Assert.That(vm.Statistics.InterceptsByKind["io-write"], Is.EqualTo(2));
                Assert.That(vm.Statistics.ChannelMessages, Is.EqualTo(4), "two intercepts, two replies");
            });
        }
    }

    [Test]
    public async Task CpuidIsAnsweredByTheKernelWithTheHypervisorBitAndSignature()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(eax, 1); a.cpuid(); a.mov(edi, ecx);
            a.mov(eax, 0x40000000); a.cpuid();
            a.hlt();
        });
        (_, _, VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Hardware.Cpu.CpuState core = machine.System.Root.Registers(vm);
            byte[] signature = new byte[12];
            BitConverter.GetBytes(core.Ebx).CopyTo(signature, 0);
            BitConverter.GetBytes(core.Ecx).CopyTo(signature, 4);
            BitConverter.GetBytes(core.Edx).CopyTo(signature, 8);
            Assert.Multiple(() =>
            {
                Assert.That(core.Edi & CpuidPolicy.HypervisorPresent, Is.Not.Zero);
                Assert.That(core.Eax, Is.EqualTo(CpuidPolicy.MaxHypervisorLeaf));
                Assert.That(System.Text.Encoding.ASCII.GetString(signature), Is.EqualTo(CpuidPolicy.VendorSignature));
                Assert.That(vm.Statistics.InterceptsByKind["cpuid"], Is.EqualTo(2));
                Assert.That(vm.Statistics.ChannelMessages, Is.Zero, "CPUID never leaves the kernel");
            });
        }
    }

    [Test]
    public async Task TheInstructionLimitStopsARunawayGuest()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            var top = a.CreateLabel();
            a.Label(ref top);
            a.inc(eax);
            a.jmp(top);
        });
        (_, PartitionExit exit, VirtualMachine vm, TestMachine machine) = await TestMachine.RunOneAsync(image, instructionLimit: 250_001);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.InstructionLimit));
            Assert.That(vm.Statistics.InstructionsRetired, Is.EqualTo(250_001));
        }
    }

    [Test]
    public async Task ADivideErrorStopsTheGuestWithADiagnosticNamingTheInstruction()
    {
        byte[] image = FlatKernel.Build(a =>
        {
            a.mov(eax, 10); a.xor(ecx, ecx); a.div(ecx);
        });
        (_, PartitionExit exit, _, TestMachine machine) = await TestMachine.RunOneAsync(image);
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(exit.Diagnostic, Does.Contain("#DE").And.Contain("div").And.Contain("EAX"));
        }
    }
}
