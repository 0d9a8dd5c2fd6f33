using HybridVmm.Hypervisor.Partitions;
using static HybridVmm.Tests.Apic.ApicGuest;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Apic;

/// <summary>
/// The local APIC's registers and IA32_APIC_BASE (Intel SDM Vol. 3A, 11.4): the power-on values are those read from
/// QEMU's APIC after SeaBIOS (qemu-system-i386 7.2, the apic sample guest prints them under both), the writable bits
/// are the SDM's.
/// </summary>
public class LocalApicRegisterTests
{
    [Test]
    public async Task AtPowerOnTheApicIsWhatSeaBiosLeavesQemusApicIn()
    {
        Run run = await RunAsync(Build(a =>
        {
            a.mov(ecx, 0x1B); a.rdmsr(); a.mov(__dword_ptr[Results], eax); a.mov(__dword_ptr[Results + 4], edx);
            a.mov(eax, 1); a.cpuid(); a.mov(__dword_ptr[Results + 8], edx);
            uint[] registers = [Id, VersionRegister, Tpr, Apr, Ppr, Ldr, Dfr, Svr, Isr, Tmr, Irr, Esr, IcrLow, IcrHigh, LvtTimer, LvtThermal, LvtPerf, Lint0, Lint1, LvtError, InitialCount, CurrentCount, Divide];
            for (int i = 0; i < registers.Length; i++) Save(a, registers[i], 3 + i);
            Exit(a);
        }, []));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.Multiple(() =>
        {
            Assert.That(run.Results[0], Is.EqualTo(0xFEE00900), "IA32_APIC_BASE: base 0xFEE00000, global enable, BSP");
            Assert.That(run.Results[1], Is.Zero);
            Assert.That(run.Results[2] & (1u << 9), Is.Not.Zero, "CPUID.1:EDX.APIC");
            Assert.That(run.Results[3..26], Is.EqualTo(new uint[]
            {
                0, 0x00050014, 0, 0, 0, 0, 0xFFFFFFFF, 0x1FF, 0, 0, 0, 0, 0x000C4610, 0,
                0x10000, 0x10000, 0x10000, 0x8700, 0x8400, 0x10000, 0, 0, 0,
            }), "ID, version, TPR, APR, PPR, LDR, DFR, SVR, ISR0, TMR0, IRR0, ESR, ICR, LVT timer ... error, counts, divide");
        });
    }

    [Test]
    public async Task RegistersKeepOnlyTheirWritableBitsAndReadOnlyOnesIgnoreWrites()
    {
        Run run = await RunAsync(Build(a =>
        {
            Write(a, Tpr, 0xFFFF_FF5A); Save(a, Tpr, 0);
            Write(a, Ldr, 0xFFFF_FFFF); Save(a, Ldr, 1);
            Write(a, Dfr, 0x0000_0000); Save(a, Dfr, 2);
            Write(a, Svr, 0xFFFF_FFFF); Save(a, Svr, 3);
            Write(a, LvtTimer, 0xFFFF_FFFF); Save(a, LvtTimer, 4);
            Write(a, Lint0, 0xFFFF_FFFF); Save(a, Lint0, 5);
            Write(a, LvtError, 0xFFFF_FFFF); Save(a, LvtError, 6);
            Write(a, Divide, 0xFFFF_FFFF); Save(a, Divide, 7);
            Write(a, VersionRegister, 0); Save(a, VersionRegister, 8);
            Write(a, Ppr, 0xFF); Save(a, Ppr, 9);
            Write(a, IcrHigh, 0xFFFF_FFFF); Save(a, IcrHigh, 10);
            Write(a, Id, 0x0500_0000); Save(a, Id, 11);
            // A narrower access reads 0 and writes nothing (QEMU's choice).
            a.mov(__byte_ptr[ApicPage + Tpr], 0x11); a.movzx(eax, __byte_ptr[ApicPage + Tpr]); a.mov(__dword_ptr[Results + 12 * 4], eax);
            Save(a, Tpr, 13);
            // A reserved register reads 0; the error shows in ESR once ESR is written.
            Save(a, 0x40, 14); Save(a, Esr, 15);
            Write(a, Esr, 0); Save(a, Esr, 16);
            Write(a, Esr, 0); Save(a, Esr, 17);
            Exit(a);
        }, []));

        Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestExit), run.Exit.Diagnostic);
        Assert.That(run.Results[..18], Is.EqualTo(new uint[]
        {
            0x5A, 0xFF000000, 0x0FFFFFFF, 0x1FF, 0x300FF, 0x1A7FF, 0x100FF, 0xB, 0x00050014, 0x5A, 0xFF000000, 0x05000000,
            0, 0x5A, 0, 0, 0x80, 0,
        }));
    }

    [Test]
    public async Task ApicBaseReservedBitsAreGeneralProtection()
    {
        Run run = await RunAsync(Build(a =>
        {
            a.mov(ecx, 0x1B); a.mov(eax, 0xFEE0_0900 | (1 << 10)); a.xor(edx, edx); a.wrmsr();
            a.mov(eax, 0xBAD); a.@out(0xF4, eax);
        }, [13]));

        Assert.That(run.Exit.ExitValue, Is.EqualTo(13u), "bit 10 (x2APIC's EXTD) is reserved without x2APIC: #GP");
    }

    [Test]
    public async Task TheBaseMovesThePageAndGlobalDisableHidesItAndCpuidsApicBitUntilEnabledAgainInItsResetState()
    {
        Run run = await RunAsync(Build(a =>
        {
            a.mov(ecx, 0x1B); a.mov(eax, 0xFED0_0900); a.xor(edx, edx); a.wrmsr();
            a.mov(eax, __dword_ptr[0xFED0_0030]); a.mov(__dword_ptr[Results], eax);            // version at the new base
            a.mov(ecx, 0x1B); a.mov(eax, 0xFED0_0100); a.xor(edx, edx); a.wrmsr();              // global disable
            a.mov(ecx, 0x1B); a.rdmsr(); a.mov(__dword_ptr[Results + 4], eax);
            a.mov(eax, 1); a.cpuid(); a.mov(__dword_ptr[Results + 8], edx);
            a.mov(ecx, 0x1B); a.mov(eax, 0xFEE0_0900); a.xor(edx, edx); a.wrmsr();              // enabled again
            a.mov(eax, __dword_ptr[0xFEE0_00F0]); a.mov(__dword_ptr[Results + 12], eax);        // SVR in its reset state
            a.mov(eax, __dword_ptr[0xFEE0_0350]); a.mov(__dword_ptr[Results + 16], eax);        // LINT0 masked
            a.mov(eax, 1); a.cpuid(); a.mov(__dword_ptr[Results + 20], edx);
            a.mov(ecx, 0x1B); a.mov(eax, 0xFEE0_0100); a.xor(edx, edx); a.wrmsr();              // disabled once more
            a.mov(eax, __dword_ptr[0xFEE0_0030]);                                                // now unbacked memory
            Exit(a);
        }, []));

        Assert.Multiple(() =>
        {
            Assert.That(run.Results[0], Is.EqualTo(0x00050014u));
            Assert.That(run.Results[1], Is.EqualTo(0xFED00100u), "BSP kept, enable clear");
            Assert.That(run.Results[2] & (1u << 9), Is.Zero, "CPUID.1:EDX.APIC follows IA32_APIC_BASE[11]");
            Assert.That(run.Results[3], Is.EqualTo(0xFFu), "re-enabled in the reset state of SDM 11.4.7.1: SVR 0xFF, software-disabled");
            Assert.That(run.Results[4], Is.EqualTo(0x10000u), "LVT LINT0 masked");
            Assert.That(run.Results[5] & (1u << 9), Is.Not.Zero, "CPUID reports the APIC again");
            Assert.That(run.Exit.Reason, Is.EqualTo(StopReason.GuestFault));
            Assert.That(run.Exit.Diagnostic, Does.Contain("0xfee00030"));
        });
    }
}
