using System.Buffers.Binary;
using HybridVmm.HostOS.Management;
using HybridVmm.HostOS.Vm;
using HybridVmm.Hypervisor.Hv1;
using HybridVmm.Hypervisor.Partitions;
using HybridVmm.Tests.Support;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace HybridVmm.Tests.Enlightened;

/// <summary>The synthetic interrupt controller: message slots, queueing behind a busy slot, EOM, delivery through the IDT.</summary>
public class SynicTests
{
    private const uint HypercallPage = 0x10000, Input = 0x11000, Simp = 0x12000, Siefp = 0x13000, Log = 0x14000;
    private const uint Idt = 0x15000, IdtDescriptor = 0x16000;
    private const byte Vector = 0x40;

    private static void Wrmsr(Assembler a, uint msr, uint value) { a.mov(ecx, msr); a.mov(eax, value); a.xor(edx, edx); a.wrmsr(); }

    /// <summary>
    /// The SINT2 handler logs each message's VMBus message type (the first payload dword), frees the slot and
    /// writes EOM when MessagePending is set, as the TLFS asks, then the local APIC's EOI (the SINT is delivered
    /// through the APIC and has no auto-EOI). The main program enables the SynIC, asks the root
    /// for offers and halts until three messages (two offers, all-offers-delivered) have arrived.
    /// </summary>
    /// <summary>How the handler ends an interrupt: the local APIC's EOI, the SINT's AutoEOI, or not at all.</summary>
    public enum EndOfInterrupt { ApicEoi, AutoEoi, None }

    private static byte[] Guest(bool enableSint, EndOfInterrupt eoi = EndOfInterrupt.ApicEoi)
    {
        // Two passes: the first finds where the handler lands, the second stores that address in the IDT gate.
        uint handlerAddress = 0;
        byte[] code = Array.Empty<byte>();
        for (int pass = 0; pass < 2; pass++)
        {
            var a = new Assembler(32);
            Label handler = a.CreateLabel();
            Program(a, ref handler, handlerAddress, enableSint, eoi);
            using var stream = new MemoryStream();
            AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), FlatKernel.Entry, BlockEncoderOptions.ReturnNewInstructionOffsets);
            handlerAddress = (uint)result.GetLabelRIP(handler);
            code = stream.ToArray();
        }

        return FlatKernel.Wrap(code);
    }

    private static void Program(Assembler a, ref Label handler, uint handlerAddress, bool enableSint, EndOfInterrupt eoi)
    {
        Label main = a.CreateLabel(), wait = a.CreateLabel(), noEom = a.CreateLabel();
        a.jmp(main);
        a.Label(ref handler);
        a.pushad();
        a.mov(ebx, __dword_ptr[Log]);                          // count
        a.mov(eax, __dword_ptr[Simp + 2 * 256 + 16]);          // payload dword 0 of the SINT2 slot
        a.mov(__dword_ptr[ebx * 4 + (Log + 4)], eax);
        a.inc(__dword_ptr[Log]);
        a.mov(__dword_ptr[Simp + 2 * 256], 0u);                // slot free
        a.test(__byte_ptr[Simp + 2 * 256 + 5], 1);             // MessagePending?
        a.jz(noEom);
        Wrmsr(a, HvMsr.Eom, 0);
        a.Label(ref noEom);
        if (eoi == EndOfInterrupt.ApicEoi)
        {
            a.mov(__dword_ptr[0xFEE0_00B0UL], 0u);              // the local APIC's EOI: the SINT has no auto-EOI
        }

        a.popad();
        a.iretd();

        a.Label(ref main);
        a.mov(esp, 0x80000);

        a.mov(eax, handlerAddress);
        a.mov(__word_ptr[Idt + Vector * 8], ax);
        a.mov(__word_ptr[Idt + Vector * 8 + 2], (ushort)0x08);
        a.mov(__word_ptr[Idt + Vector * 8 + 4], (ushort)0x8E00);
        a.shr(eax, 16);
        a.mov(__word_ptr[Idt + Vector * 8 + 6], ax);
        a.mov(__word_ptr[IdtDescriptor], (ushort)(256 * 8 - 1));
        a.mov(__dword_ptr[IdtDescriptor + 2], Idt);
        a.lidt(__[IdtDescriptor]);
        Wrmsr(a, HvMsr.GuestOsId, 1);
        Wrmsr(a, HvMsr.Hypercall, HypercallPage | 1);
        Wrmsr(a, HvMsr.Simp, Simp | 1);
        Wrmsr(a, HvMsr.Siefp, Siefp | 1);
        Wrmsr(a, HvMsr.Sint0 + 2, (enableSint ? 0 : 0x10000u) | (eoi == EndOfInterrupt.AutoEoi ? 0x20000u : 0) | Vector);
        Wrmsr(a, HvMsr.SControl, 1);
        a.sti();
        a.mov(__dword_ptr[Input], 1u); a.mov(__dword_ptr[Input + 8], 1u); a.mov(__dword_ptr[Input + 12], 8u);
        a.mov(__dword_ptr[Input + 16], 3u);                    // VMBus RequestOffers
        a.mov(eax, (uint)HvCallCode.PostMessage); a.xor(edx, edx); a.mov(ecx, Input); a.xor(ebx, ebx);
        a.mov(ebp, HypercallPage); a.call(ebp);
        if (eoi == EndOfInterrupt.None)
        {
            // The interrupts cannot all come: wait a bounded while (the root answers at pass barriers), then report.
            a.mov(ecx, 1_000_000);
            a.Label(ref wait);
            a.dec(ecx);
            a.jnz(wait);
        }
        else if (enableSint)
        {
            a.Label(ref wait);
            a.hlt();
            a.cmp(__dword_ptr[Log], 3);
            a.jb(wait);
        }

        a.mov(eax, __dword_ptr[Log]); a.@out(0xF4, eax);
    }

    private static async Task<(PartitionExit Exit, uint[] Log, TestMachine Machine)> Run(bool enableSint, EndOfInterrupt eoi = EndOfInterrupt.ApicEoi)
    {
        var machine = new TestMachine();
        VirtualMachine vm = machine.Create(new VmConfiguration
        {
            Name = "synic", Image = Guest(enableSint, eoi), MemoryBytes = 4u << 20, SyntheticDevices = new[] { "synthcon", "synthnet" },
        });
        await machine.RunAsync();
        byte[] raw = new byte[16];
        machine.System.Root.ReadMemoryOfStoppedVm(vm, Log, raw);
        uint[] log = Enumerable.Range(0, 4).Select(i => BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4))).ToArray();
        return (await vm.Exited, log, machine);
    }

    [TestCase(EndOfInterrupt.ApicEoi)]
    [TestCase(EndOfInterrupt.AutoEoi)]
    public async Task MessagesQueueBehindABusySlotAndArriveOneByOneAfterEom(EndOfInterrupt eoi)
    {
        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(enableSint: true, eoi);
        using (machine)
        {
            Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, 3u)), exit.Diagnostic + string.Join("\n", machine.TraceLines.TakeLast(15)));
            Assert.That(log[1..], Is.EqualTo(new uint[] { 1, 1, 4 }), "offer, offer, all offers delivered");
            Assert.That(machine.TraceLines.Count(l => l.Contains("wrmsr HV_X64_MSR_EOM")), Is.EqualTo(2), "one EOM per queued message");
        }
    }

    [Test]
    public async Task AMaskedSintRefusesMessagesWithInvalidSynicState()
    {
        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(enableSint: false);
        using (machine)
        {
            Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, 0u)), exit.Diagnostic);
            Assert.That(machine.TraceLines, Has.Some.Contains("Synic     message sint=2 type=1 size=48 -> HV_STATUS_INVALID_SYNIC_STATE"));
        }
    }

    /// <summary>
    /// A SINT is a local APIC interrupt (TLFS 11.8.4): without AutoEOI and without the APIC's EOI the first vector stays
    /// in service and holds back the next message's interrupt of the same class: a million instructions later, the guest
    /// has taken one.
    /// </summary>
    [Test]
    public async Task WithoutEoiOrAutoEoiTheSintsVectorStaysInServiceAndTheNextWaits()
    {
        (PartitionExit exit, uint[] log, TestMachine machine) = await Run(enableSint: true, EndOfInterrupt.None);
        using (machine)
        {
            Assert.That((exit.Reason, exit.ExitValue), Is.EqualTo((StopReason.GuestExit, 1u)), exit.Diagnostic);
            Assert.That(log[1], Is.EqualTo(1u), "the first offer");
        }
    }
}
