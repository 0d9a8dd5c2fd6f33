using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Testing;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Kernel;

/// <summary>
/// A partition with several vCPUs, started as a PC starts its processors (SDM Vol. 3A, 9.4 and 11.6): application
/// processors wait for INIT and a start-up IPI through the bootstrap processor's ICR, then run real-mode code at the
/// SIPI vector × 0x1000. kvm-unit-tests' <c>smptest</c> and <c>smptest3</c> check the same with real APs against QEMU.
/// </summary>
public class MultiprocessorTests
{
    private const uint Trampoline = 0x8000, Marker = 0x7000, IcrLow = 0xFEE0_0300, IcrHigh = 0xFEE0_0310;

    /// <summary>The AP's real-mode code: it records CPUID.1:EBX, CS and its APIC ID register, sets the marker, and halts.</summary>
    private static byte[] ApCode() => GuestCode.Assemble(a =>
    {
        a.xor(ax, ax);
        a.mov(ds, ax);
        a.mov(eax, 1);
        a.cpuid();
        a.mov(__dword_ptr[Marker + 4], ebx);
        a.mov(__word_ptr[Marker + 8], cs);
        a.mov(__dword_ptr[Marker], 0xA5A5);
        a.cli();
        a.hlt();
    }, Trampoline, bitness: 16);

    /// <summary>The BSP copies the AP's code to <see cref="Trampoline"/> with 32-bit stores.</summary>
    private static void CopyApCode(Assembler a)
    {
        byte[] code = ApCode();
        Array.Resize(ref code, (code.Length + 3) & ~3);
        for (int i = 0; i < code.Length; i += 4)
        {
            a.mov(__dword_ptr[Trampoline + (uint)i], BitConverter.ToInt32(code, i));
        }
    }

    /// <summary>INIT then a start-up IPI with vector 0x08 (0x8000) to APIC ID 1, as an OS starts an AP.</summary>
    private static void StartApplicationProcessor(Assembler a)
    {
        a.mov(__dword_ptr[IcrHigh], 1 << 24);  // destination: APIC ID 1
        a.mov(__dword_ptr[IcrLow], 0x4500);     // INIT, level assert
        a.mov(__dword_ptr[IcrLow], 0x4608);     // start-up, vector 0x08: 0x8000
    }

    /// <summary>Spins until the dword at <paramref name="address"/> holds <paramref name="value"/>.</summary>
    private static void WaitFor(Assembler a, uint address, int value)
    {
        var wait = a.CreateLabel();
        a.Label(ref wait);
        a.cmp(__dword_ptr[address], value);
        a.jne(wait);
    }

    /// <summary>Ends the guest through the debug-exit port with status 0.</summary>
    private static void Exit(Assembler a)
    {
        a.mov(eax, 0);
        a.@out(0xF4, eax);
    }

    private static async Task<(PartitionExit Exit, byte[] Results, TestMachine Machine)> RunAsync(int processors, Action<Assembler> bsp)
    {
        var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration { Name = "smp", Image = FlatKernel.Build(bsp), MemoryBytes = 4u << 20, Processors = processors });
        await machine.RunAsync();
        byte[] results = new byte[12];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Marker, results);
        return (await vm.Exited, results, machine);
    }

    [Test]
    public async Task AnApplicationProcessorStartsAtTheStartupVectorInRealModeWithItsOwnApicId()
    {
        (PartitionExit exit, byte[] results, TestMachine machine) = await RunAsync(2, a =>
        {
            CopyApCode(a);
            StartApplicationProcessor(a);
            WaitFor(a, Marker, 0xA5A5);
            Exit(a);
        });
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Assert.Multiple(() =>
            {
                Assert.That(BitConverter.ToUInt32(results, 4) >> 24, Is.EqualTo(1u), "CPUID.1:EBX[31:24], the initial APIC ID");
                Assert.That(BitConverter.ToUInt16(results, 8), Is.EqualTo(0x0800), "CS = vector × 0x100 in real mode");
            });
            Assert.That(machine.TraceLines, Has.Some.Contains("ipi startup vector=0x08 -> vcpu 1"));
        }
    }

    [Test]
    public async Task WithoutAStartupIpiTheApplicationProcessorRunsNothingAndTheHaltedMachineStops()
    {
        (PartitionExit exit, byte[] results, TestMachine machine) = await RunAsync(2, a =>
        {
            CopyApCode(a);
            a.mov(__dword_ptr[IcrHigh], 1 << 24);
            a.mov(__dword_ptr[IcrLow], 0x4500);     // INIT only
            a.cli();
            a.hlt();
        });
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.Halted), "the BSP halted with IF=0 and the AP waits for a SIPI nobody can send");
            Assert.That(BitConverter.ToUInt32(results, 0), Is.Zero, "the AP never ran");
        }
    }

    /// <summary>
    /// An AP's APIC comes out of INIT software-disabled (SVR 0xFF), so it takes no fixed interrupt until its code enables
    /// it, which real-mode code cannot reach; an NMI it takes whatever the APIC's state and IF.
    /// </summary>
    [Test]
    public async Task AnNmiIpiFromTheBootstrapProcessorWakesAHaltedApplicationProcessor()
    {
        // The AP's code: real mode's interrupt table is the IVT; the NMI's handler (vector 2) sets the marker. It waits in HLT with IF=0.
        byte[] ap = GuestCode.Assemble(a =>
        {
            a.xor(ax, ax);
            a.mov(ds, ax);
            a.mov(ss, ax);
            a.mov(sp, 0x7C00);
            a.mov(__word_ptr[2 * 4], unchecked((short)(Trampoline + 0x80)));
            a.mov(__word_ptr[2 * 4 + 2], 0);
            a.mov(__dword_ptr[Marker + 4], 1);      // ready
            a.cli();
            var halt = a.CreateLabel();
            a.Label(ref halt);
            a.hlt();
            a.jmp(halt);
        }, Trampoline, bitness: 16);
        byte[] handler = GuestCode.Assemble(a => { a.mov(__dword_ptr[Marker], 0xA5A5); a.cli(); a.hlt(); }, Trampoline + 0x80, bitness: 16);
        byte[] code = new byte[0x100];
        ap.CopyTo(code, 0);
        handler.CopyTo(code, 0x80);

        (PartitionExit exit, byte[] results, TestMachine machine) = await RunAsync(2, a =>
        {
            for (int i = 0; i < code.Length; i += 4)
            {
                a.mov(__dword_ptr[Trampoline + (uint)i], BitConverter.ToInt32(code, i));
            }

            StartApplicationProcessor(a);
            WaitFor(a, Marker + 4, 1);
            a.mov(__dword_ptr[IcrLow], 0x4400);     // NMI, to APIC ID 1
            WaitFor(a, Marker, 0xA5A5);
            Exit(a);
        });
        using (machine)
        {
            Assert.That(exit.Reason, Is.EqualTo(StopReason.GuestExit), exit.Diagnostic);
            Assert.That(machine.TraceLines, Has.Some.Contains("ipi nmi vector=0x00 -> vcpu 1"));
        }
    }
}
